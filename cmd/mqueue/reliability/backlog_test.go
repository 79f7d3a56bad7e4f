package reliability

// A consumer that reads its backlog from disk while the active segment is
// empty: the state right after the compactor seals an aged segment (no
// producer since), after a restart whose ids jump, or between a rotation and
// the first write to the new segment. Found by TestReliabilityCrashPoints,
// whose kills leave empty segments behind; this test reaches the state
// without any crash.

import (
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mqueue/mqueue/cmd/mqueue/proctest"
)

func TestReliabilityBacklogAfterAgeRotation(t *testing.T) {
	proctest.Long(t)
	bin := proctest.Build(t)
	for _, restart := range []bool{false, true} {
		t.Run(fmt.Sprintf("restart=%v", restart), func(t *testing.T) {
			dir := t.TempDir()
			data := filepath.Join(dir, "data")
			// 8 KiB segments keep a 4 KiB memory tail, so most of a
			// backlog of 100 bodies of 200 bytes is read from disk.
			flags := []string{"--segment-bytes", "8192", "--segment-age", "1s", "--drain-grace", "100ms"}
			s, _ := proctest.StartReady(t, proctest.Config{Bin: bin, Data: data, Flags: flags, LogDir: dir, Name: "server-0"})
			client := proctest.Client(t)
			const n = 100
			url := s.Base + "/api/queue/" + relQueue
			var ids []uint64
			for i := 0; i < n; i++ {
				resp, err := client.Post(url, "application/octet-stream", strings.NewReader(fmt.Sprintf("%04d%s", i, strings.Repeat("x", 196))))
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				id, err := strconv.ParseUint(resp.Header.Get("X-Message-Id"), 10, 64)
				if resp.StatusCode != 201 || err != nil {
					t.Fatalf("POST %d = %d", i, resp.StatusCode)
				}
				ids = append(ids, id)
			}
			if restart {
				if _, err := s.Term(proctest.ExitLimit); err != nil {
					t.Fatal(err)
				}
				s, _ = proctest.StartReady(t, proctest.Config{Bin: bin, Data: data, Flags: flags, LogDir: dir, Name: "server-1"})
				url = s.Base + "/api/queue/" + relQueue
			}
			// The compactor (every second) seals the active segment once it
			// is a second old; the new active segment stays empty.
			time.Sleep(2500 * time.Millisecond)
			// A slow consumer: the compactor deletes the segments it has
			// read meanwhile, so it ends up in the last non-empty one with
			// only the empty active segment after it.
			var got []uint64
			for i := 0; i < n+1; i++ {
				time.Sleep(25 * time.Millisecond)
				resp, err := client.Get(url)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 204 {
					break
				}
				if resp.StatusCode != 200 {
					t.Fatalf("GET = %d %s", resp.StatusCode, body)
				}
				id, _ := strconv.ParseUint(resp.Header.Get("X-Message-Id"), 10, 64)
				if want := fmt.Sprintf("%04d", len(got)); len(got) < n && (!strings.HasPrefix(string(body), want) || id != ids[len(got)]) {
					t.Errorf("message %d: id %d body %.8q, want id %d body %s...", len(got), id, body, ids[len(got)], want)
				}
				got = append(got, id)
			}
			client.CloseIdleConnections()
			t.Logf("figures: restart=%v acked=%d delivered=%d acked-lost=%d", restart, n, len(got), n-len(got))
			if len(got) != n {
				t.Errorf("acked %d messages, delivered %d: the backlog read from disk skipped %d acked messages once the active segment was empty; log:\n%s",
					n, len(got), n-len(got), s.LogTail())
			}
		})
	}
}
