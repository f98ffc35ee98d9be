// Command retention-outreach is the outreach Job's entrypoint: it sends
// one shard of a campaign run (see internal/outreachcmd). It ships in the
// operator's image beside retention-operator and does the same as
// `retention-operator outreach`, but links nothing of Kubernetes, so a
// runner pod starts in about 10 MiB instead of 45.
package main

import (
	"os"

	"github.com/retention-dev/retention-operator/internal/outreachcmd"
)

func main() { os.Exit(outreachcmd.Main(os.Args[1:], os.Stderr)) }
