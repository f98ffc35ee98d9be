package localcluster

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// stopGrace is how long a component gets between SIGTERM and SIGKILL.
const stopGrace = 5 * time.Second

// process is one component the cluster started: its own process group,
// killed with the test process (Pdeathsig on linux), output in a log file.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	logFile *os.File
	done    chan struct{} // closed once Wait returned
	err     error         // Wait's result, valid after done
}

// startProcess starts bin with args, stdout and stderr to logPath (and to
// extra, if not nil).
func startProcess(name, bin string, args []string, logPath string, extra io.Writer) (*process, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	var out io.Writer = f
	if extra != nil {
		out = io.MultiWriter(f, &prefixWriter{prefix: name + ": ", w: extra})
	}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, logPath: logPath, logFile: f, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *process) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has ended, and how.
func (p *process) exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// stop sends SIGTERM to the process group, SIGKILL after stopGrace, and
// waits for the process.
func (p *process) stop() {
	if done, _ := p.exited(); done {
		return
	}
	_ = syscall.Kill(-p.pid(), syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(stopGrace):
		_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
		<-p.done
	}
	// Anything left in the group (children that outlived their parent).
	_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
}

// tail returns about the last n lines of the file at path.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	const max = 8 << 10
	if len(b) > max {
		b = b[len(b)-max:]
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// prefixWriter writes each whole line to w with a prefix.
type prefixWriter struct {
	prefix string
	w      io.Writer
	buf    []byte
}

func (pw *prefixWriter) Write(b []byte) (int, error) {
	pw.buf = append(pw.buf, b...)
	for {
		i := bytes.IndexByte(pw.buf, '\n')
		if i < 0 {
			break
		}
		line := append([]byte(pw.prefix), pw.buf[:i+1]...)
		pw.buf = pw.buf[i+1:]
		if _, err := pw.w.Write(line); err != nil {
			return len(b), err
		}
	}
	return len(b), nil
}

// flush writes a last line that had no newline.
func (pw *prefixWriter) flush() {
	if len(pw.buf) > 0 {
		_, _ = pw.w.Write(append(append([]byte(pw.prefix), pw.buf...), '\n'))
		pw.buf = nil
	}
}
