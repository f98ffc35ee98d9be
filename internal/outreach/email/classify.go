package email

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"

	"github.com/emersion/go-smtp"

	"github.com/retention-dev/retention-operator/internal/outreach/channel"
)

// failure is an error that is a permanent failure by itself: a message or
// configuration this channel cannot carry. Its reason is the result's.
type failure struct{ reason string }

func (f *failure) Error() string { return "email: " + f.reason }

// fail returns the error of a permanent failure with reason.
func fail(reason string) error { return &failure{reason} }

func failResult(reason string) channel.Result {
	return channel.Result{Outcome: channel.Fail, Reason: reason}
}

func retry(reason string) channel.Result {
	return channel.Result{Outcome: channel.Retry, Reason: reason}
}

// classifyError turns a dial or transaction error into a result. parent is
// the caller's context, sendCtx the one bounded by Timeout; a reply the
// server did give wins over a context that ended meanwhile.
func classifyError(parent, sendCtx context.Context, err error) channel.Result {
	var f *failure
	if errors.As(err, &f) {
		return failResult(f.reason)
	}
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return smtpResult(se)
	}
	if sendCtx.Err() != nil {
		return ctxResult(parent)
	}
	if isTLSConfigError(err) {
		return failResult("tls")
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return retry("timeout")
	}
	// Refused, reset, closed, DNS, a malformed reply: the detail may name
	// a host or echo server text, and the runner retries all alike.
	return retry("connection error")
}

// ctxResult is the result of a send whose context ended: "cancelled" when
// the caller cancelled, "timeout" when a deadline (the caller's or
// Timeout) passed.
func ctxResult(parent context.Context) channel.Result {
	if errors.Is(parent.Err(), context.Canceled) {
		return retry("cancelled")
	}
	return retry("timeout")
}

// smtpResult classifies a server reply: 4xx is transient, 5xx permanent.
// The reason is the reply code and enhanced code only; the reply text is
// left out because servers echo addresses in it.
func smtpResult(se *smtp.SMTPError) channel.Result {
	reason := fmt.Sprintf("smtp %d", se.Code)
	if ec := se.EnhancedCode; ec != smtp.EnhancedCodeNotSet && ec != smtp.NoEnhancedCode &&
		ec[0] >= 2 && ec[0] <= 5 && ec[1] >= 0 && ec[1] <= 999 && ec[2] >= 0 && ec[2] <= 999 {
		reason = fmt.Sprintf("smtp %d %d.%d.%d", se.Code, ec[0], ec[1], ec[2])
	}
	if se.Code >= 500 && se.Code <= 599 {
		return failResult(reason)
	}
	// 4xx, and anything unexpected (a 2xx or 3xx where another reply was
	// due), which is at worst a confused server worth another try.
	return retry(reason)
}

// keepsConn reports whether the connection is still in step with the
// server after err: only a well-formed rejection (4xx, 5xx) says so, and
// 421 means the server is closing the connection anyway.
func keepsConn(err error) bool {
	var se *smtp.SMTPError
	return errors.As(err, &se) && se.Code >= 400 && se.Code <= 599 && se.Code != 421
}

// lostWhileIdle reports whether err (on the first command of a pooled
// connection) says the server had closed the connection: a 421 (idle
// timeout, shutdown) or a read/write on a closed socket.
func lostWhileIdle(err error) bool {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code == 421
	}
	var f *failure
	return !errors.As(err, &f) && !isTLSConfigError(err)
}

// isTLSConfigError reports whether err means TLS cannot work with this
// configuration: the certificate does not verify (unknown CA, wrong name,
// expired), the server does not speak TLS on this port, or it refused the
// handshake. Retrying would not help.
func isTLSConfigError(err error) bool {
	var (
		verifyErr    *tls.CertificateVerificationError
		unknownCA    x509.UnknownAuthorityError
		wrongName    x509.HostnameError
		invalidCert  x509.CertificateInvalidError
		notTLS       tls.RecordHeaderError
		alertFromTLS tls.AlertError
	)
	return errors.As(err, &verifyErr) || errors.As(err, &unknownCA) ||
		errors.As(err, &wrongName) || errors.As(err, &invalidCert) ||
		errors.As(err, &notTLS) || errors.As(err, &alertFromTLS)
}
