package api_test

import (
	"encoding/base64"
	"encoding/binary"
	"net/http"
	"strings"
	"testing"

	"github.com/mqueue/mqueue/api"
)

// forgeNext makes, from a client's own receipt, the receipt of the next
// lease (id+1, lease sequence+1), keeping every other byte: what a client
// who reads its receipt's layout would try.
func forgeNext(t *testing.T, receipt string) string {
	t.Helper()
	enc, rest, dotted := strings.Cut(receipt, ".")
	b, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil || len(b) < 16 {
		t.Fatalf("receipt %q is not base64url of at least 16 bytes: %v", receipt, err)
	}
	binary.LittleEndian.PutUint64(b[0:], binary.LittleEndian.Uint64(b[0:])+1)
	binary.LittleEndian.PutUint64(b[8:], binary.LittleEndian.Uint64(b[8:])+1)
	forged := base64.RawURLEncoding.EncodeToString(b)
	if dotted {
		forged += "." + rest
	}
	return forged
}

// A client cannot ack another client's message by forging its receipt
// from its own: receipts are signed with a key only the server has.
func TestForgedReceiptIsRefused(t *testing.T) {
	ts := start(t)
	ts.post("/api/queue/jobs", "mine")
	ts.post("/api/queue/jobs", "theirs")
	mine := ts.do("GET", "/api/queue/jobs?lease=60", nil)
	theirs := ts.do("GET", "/api/queue/jobs?lease=60", nil)
	if string(mine.body) != "mine" || string(theirs.body) != "theirs" {
		t.Fatalf("leased %q and %q", mine.body, theirs.body)
	}
	own := mine.header.Get("X-Receipt")
	if strings.Contains(own, ".") {
		t.Errorf("receipt %q shows a host name", own)
	}
	forged := forgeNext(t, own)
	a := ts.do("POST", "/api/queue/jobs/ack", nil, "X-Receipt", forged)
	if a.status != http.StatusGone || a.errBody(t).Error != api.CodeLeaseExpired {
		t.Fatalf("ack of a forged receipt = %d %s, want 410 LEASE_EXPIRED", a.status, a.body)
	}
	// The right layout with a made-up mac: refused too.
	raw := make([]byte, 32)
	binary.LittleEndian.PutUint64(raw, 2)
	binary.LittleEndian.PutUint64(raw[8:], 2)
	made := base64.RawURLEncoding.EncodeToString(raw)
	for _, path := range []string{"/api/queue/jobs/ack", "/api/queue/jobs/nack", "/api/queue/jobs/extend?lease=5"} {
		if r := ts.do("POST", path, nil, "X-Receipt", made); r.status != http.StatusGone {
			t.Fatalf("%s with a made-up receipt = %d %s, want 410", path, r.status, r.body)
		}
	}
	// The owner's receipt still works: nothing was acked by the forgeries.
	if st, _ := ts.eng.Stats("jobs"); st.InFlight != 2 {
		t.Fatalf("in_flight %d after the forgeries, want 2", st.InFlight)
	}
	if r := ts.do("POST", "/api/queue/jobs/ack", nil, "X-Receipt", theirs.header.Get("X-Receipt")); r.status != http.StatusNoContent {
		t.Fatalf("ack of the real receipt = %d %s", r.status, r.body)
	}
	if r := ts.do("POST", "/api/queue/jobs/ack", nil, "X-Receipt", own); r.status != http.StatusNoContent {
		t.Fatalf("ack of the owner's receipt = %d %s", r.status, r.body)
	}
}
