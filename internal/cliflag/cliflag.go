// Package cliflag holds what every retention-operator subcommand does with
// its command line: parse flags, tell -h from a usage error.
package cliflag

import (
	"errors"
	"flag"
	"fmt"
)

// UsageError is a bad command line: exit code 2.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

// Usagef returns a UsageError.
func Usagef(format string, args ...any) error {
	return &UsageError{fmt.Sprintf(format, args...)}
}

// Parse parses a command's flags. help is true after -h (the usage is
// printed; the command does nothing more); stray arguments are a usage
// error.
func Parse(fs *flag.FlagSet, args []string) (help bool, err error) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return true, nil
		}
		return false, Usagef("%v", err)
	}
	if fs.NArg() > 0 {
		return false, Usagef("unexpected argument %q", fs.Arg(0))
	}
	return false, nil
}
