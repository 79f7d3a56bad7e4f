// Package reliability is mqueue's reliability suite: black-box tests that
// run the real binary (cmd/mqueue/proctest) under load and break it — kill
// -9 at every crash point, power loss on a loop device, damaged files, a
// full disk, failing fsyncs under strace, hostile input, leases across
// crashes — and check, through a ledger of what every client was told,
// that no acknowledged message is lost or delivered twice. Each test prints
// its figures in one line starting "figures:"; docs/RELIABILITY.md collects
// them.
package reliability

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
