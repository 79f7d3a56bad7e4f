package reliability

// Torn and corrupt files at the binary level: a real server fills a data
// directory and stops; the test damages the files the way a crash, a power
// cut or a bad disk would; the server restarts on them. It must start (or
// refuse the queue with a clear log line, never a crash loop), serve no bad
// record, lose nothing beyond the damaged records, and reuse no id. The unit
// tests (segment TestRepairTornTails, engine TestRecoveryTable) cover the
// same shapes below the HTTP layer.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mqueue/mqueue/cmd/mqueue/proctest"
)

// relFrame is one record of a segment file as found on disk.
type relFrame struct {
	off, end int64 // byte range of the frame, length prefix included
	id       uint64
}

// relSegments returns the segment bases of a queue directory, oldest first.
func relSegments(t testing.TB, qdir string) []uint64 {
	t.Helper()
	ents, err := os.ReadDir(qdir)
	if err != nil {
		t.Fatal(err)
	}
	var out []uint64
	for _, e := range ents {
		if len(e.Name()) == 20 && e.IsDir() {
			if b, err := strconv.ParseUint(e.Name(), 10, 64); err == nil {
				out = append(out, b)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func relSegPath(qdir string, base uint64) string {
	return filepath.Join(qdir, fmt.Sprintf("%020d", base), "00000000000000000001")
}

// relFrames parses a segment file's frames (uvarint length, then the record
// whose id is at bytes 5..13).
func relFrames(t testing.TB, path string) []relFrame {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []relFrame
	for off := 0; off < len(b); {
		size, n := binary.Uvarint(b[off:])
		if n <= 0 || off+n+int(size) > len(b) || size < 13 {
			break
		}
		e := b[off+n : off+n+int(size)]
		out = append(out, relFrame{off: int64(off), end: int64(off + n + int(size)), id: binary.LittleEndian.Uint64(e[5:])})
		off += n + int(size)
	}
	return out
}

// relDamageCase damages a stopped server's queue directory and returns the
// ids whose records it may have destroyed.
type relDamageCase struct {
	name string
	kill bool // stop the server with SIGKILL instead of SIGTERM first
	// cursorHit: the cursor is damaged, so popped messages may come again.
	cursorHit bool
	damage    func(t *testing.T, qdir string) (hit []uint64)
}

func relTruncate(t *testing.T, path string, size int64) {
	t.Helper()
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
}

func relAppend(t *testing.T, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
}

func relWriteAt(t *testing.T, path string, b []byte, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// newest returns the newest segment's file and frames.
func relNewest(t *testing.T, qdir string) (string, []relFrame) {
	segs := relSegments(t, qdir)
	if len(segs) == 0 {
		t.Fatal("no segment")
	}
	p := relSegPath(qdir, segs[len(segs)-1])
	return p, relFrames(t, p)
}

// relSealed returns the oldest sealed segment holding unconsumed records.
func relSealed(t *testing.T, qdir string) (string, []relFrame) {
	segs := relSegments(t, qdir)
	if len(segs) < 3 {
		t.Fatalf("want at least 3 segments, have %d", len(segs))
	}
	p := relSegPath(qdir, segs[len(segs)-2])
	return p, relFrames(t, p)
}

func relIDs(fr []relFrame) []uint64 {
	var out []uint64
	for _, f := range fr {
		out = append(out, f.id)
	}
	return out
}

func relCutLast(at func(f relFrame) int64) func(t *testing.T, qdir string) []uint64 {
	return func(t *testing.T, qdir string) []uint64 {
		p, fr := relNewest(t, qdir)
		last := fr[len(fr)-1]
		relTruncate(t, p, at(last))
		return []uint64{last.id}
	}
}

func relTail(b byte, n int) func(t *testing.T, qdir string) []uint64 {
	return func(t *testing.T, qdir string) []uint64 {
		p, _ := relNewest(t, qdir)
		relAppend(t, p, bytes.Repeat([]byte{b}, n))
		return nil
	}
}

func relDamageCases() []relDamageCase {
	return []relDamageCase{
		{name: "cut_last_record_after_1_byte", damage: relCutLast(func(f relFrame) int64 { return f.off + 1 })},
		{name: "cut_last_record_in_header", damage: relCutLast(func(f relFrame) int64 { return f.off + 12 })},
		{name: "cut_last_record_half", damage: relCutLast(func(f relFrame) int64 { return (f.off + f.end) / 2 })},
		{name: "cut_last_record_minus_1_byte", damage: relCutLast(func(f relFrame) int64 { return f.end - 1 })},
		{name: "cut_last_record_after_kill9", kill: true, damage: relCutLast(func(f relFrame) int64 { return f.end - 7 })},
		{name: "zero_tail_1", damage: relTail(0, 1)},
		{name: "zero_tail_512", damage: relTail(0, 512)},
		{name: "zero_tail_4096", damage: relTail(0, 4096)},
		{name: "zero_tail_4096_after_kill9", kill: true, damage: relTail(0, 4096)},
		{name: "ff_tail_1", damage: relTail(0xFF, 1)},
		{name: "ff_tail_4096", damage: relTail(0xFF, 4096)},
		{name: "zero_last_100_bytes", damage: func(t *testing.T, qdir string) []uint64 {
			p, fr := relNewest(t, qdir)
			end := fr[len(fr)-1].end
			relWriteAt(t, p, make([]byte, 100), end-100)
			var hit []uint64
			for _, f := range fr {
				if f.end > end-100 {
					hit = append(hit, f.id)
				}
			}
			return hit
		}},
		{name: "bit_flip_payload_sealed_segment", damage: func(t *testing.T, qdir string) []uint64 {
			p, fr := relSealed(t, qdir)
			f := fr[len(fr)/2]
			b, _ := os.ReadFile(p)
			relWriteAt(t, p, []byte{b[f.end-3] ^ 0x10}, f.end-3)
			return []uint64{f.id}
		}},
		{name: "bit_flip_id_sealed_segment", damage: func(t *testing.T, qdir string) []uint64 {
			p, fr := relSealed(t, qdir)
			f := fr[1]
			b, _ := os.ReadFile(p)
			relWriteAt(t, p, []byte{b[f.off+7] ^ 0x01}, f.off+7) // inside the stored id
			return []uint64{f.id}
		}},
		{name: "bit_flip_length_sealed_segment", damage: func(t *testing.T, qdir string) []uint64 {
			p, fr := relSealed(t, qdir)
			f := fr[len(fr)/2]
			b, _ := os.ReadFile(p)
			relWriteAt(t, p, []byte{b[f.off] ^ 0x40}, f.off) // the frame length: the rest cannot be framed
			var hit []uint64
			for _, g := range fr[len(fr)/2:] {
				hit = append(hit, g.id)
			}
			return hit
		}},
		{name: "deleted_newest_segment", damage: func(t *testing.T, qdir string) []uint64 {
			p, fr := relNewest(t, qdir)
			if err := os.RemoveAll(filepath.Dir(p)); err != nil {
				t.Fatal(err)
			}
			return relIDs(fr)
		}},
		{name: "deleted_newest_segment_after_kill9", kill: true, damage: func(t *testing.T, qdir string) []uint64 {
			p, fr := relNewest(t, qdir)
			if err := os.RemoveAll(filepath.Dir(p)); err != nil {
				t.Fatal(err)
			}
			return relIDs(fr)
		}},
		{name: "deleted_sealed_segment_meta", damage: func(t *testing.T, qdir string) []uint64 {
			p, _ := relSealed(t, qdir)
			if err := os.Remove(filepath.Join(filepath.Dir(p), "meta")); err != nil {
				t.Fatal(err)
			}
			return nil
		}},
		{name: "cursor_cut_to_0", cursorHit: true, damage: func(t *testing.T, qdir string) []uint64 {
			relTruncate(t, filepath.Join(qdir, "cursor"), 0)
			return nil
		}},
		{name: "cursor_cut_to_10", cursorHit: true, damage: func(t *testing.T, qdir string) []uint64 {
			relTruncate(t, filepath.Join(qdir, "cursor"), 10)
			return nil
		}},
		{name: "cursor_cut_to_600", cursorHit: true, damage: func(t *testing.T, qdir string) []uint64 {
			relTruncate(t, filepath.Join(qdir, "cursor"), 600)
			return nil
		}},
		{name: "hwm_garbage", damage: func(t *testing.T, qdir string) []uint64 {
			if err := os.WriteFile(filepath.Join(qdir, "hwm"), []byte("garbage!"), 0o640); err != nil {
				t.Fatal(err)
			}
			return nil
		}},
	}
}

func TestReliabilityDamagedFiles(t *testing.T) {
	proctest.Long(t)
	bin := proctest.Build(t)
	cases := relDamageCases()
	opened, refused, badServed, reused, lostBeyond := 0, 0, 0, 0, 0
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := relDamageRun(t, bin, i, c)
			if r.opened {
				opened++
			}
			if r.refused {
				refused++
			}
			badServed += r.bad
			reused += r.reused
			lostBeyond += r.lostBeyond
		})
	}
	t.Logf("figures: damage-cases=%d opened=%d refused-with-message=%d crashed-or-hung=%d bad-records-served=%d ids-reused=%d acked-lost-beyond-the-damage=%d",
		len(cases), opened, refused, len(cases)-opened-refused, badServed, reused, lostBeyond)
}

type relDamageResult struct {
	opened, refused         bool
	bad, reused, lostBeyond int
	hitLen                  int
}

func relDamageRun(t *testing.T, bin string, n int, c relDamageCase) (res relDamageResult) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	qdir := filepath.Join(data, relQueue)
	flags := []string{"--segment-bytes", "4096", "--drain-grace", "100ms"}
	s, _ := proctest.StartReady(t, proctest.Config{Bin: bin, Data: data, Flags: flags, LogDir: dir, Name: "before"})
	client := proctest.Client(t)
	url := s.Base + "/api/queue/" + relQueue
	const total, popFirst = 80, 10
	acked := map[uint64]string{} // id -> key
	var maxID uint64
	for i := 0; i < total; i++ {
		key := fmt.Sprintf("D%d-%d", n, i)
		resp, err := client.Post(url, "application/octet-stream", bytes.NewReader(relBody(key, relSpread)))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		id, err := strconv.ParseUint(resp.Header.Get("X-Message-Id"), 10, 64)
		if resp.StatusCode != 201 || err != nil {
			t.Fatalf("POST %d = %d", i, resp.StatusCode)
		}
		acked[id] = key
		maxID = max(maxID, id)
	}
	popped := map[uint64]bool{}
	for i := 0; i < popFirst; i++ {
		resp, err := client.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		id, _ := strconv.ParseUint(resp.Header.Get("X-Message-Id"), 10, 64)
		popped[id] = true
	}
	client.CloseIdleConnections()
	if c.kill {
		s.Kill()
	} else if _, err := s.Term(proctest.ExitLimit); err != nil {
		t.Fatal(err)
	}
	hit := map[uint64]bool{}
	for _, id := range c.damage(t, qdir) {
		hit[id] = true
	}
	res.hitLen = len(hit)

	s2 := proctest.Launch(t, proctest.Config{Bin: bin, Data: data, Flags: flags, LogDir: dir, Name: "after"})
	if _, err := s2.WaitReady(proctest.ReadyLimit); err != nil {
		log := s2.LogText()
		if strings.Contains(log, "panic") || !strings.Contains(log, "level=ERROR") {
			t.Errorf("after %s the server did not start and said nothing clear: %v; log:\n%s", c.name, err, s2.LogTail())
		} else {
			res.refused = true
			t.Errorf("after %s the server refused to start: %v; log:\n%s", c.name, err, s2.LogTail())
		}
		return res
	}
	url = s2.Base + "/api/queue/" + relQueue
	delivered := map[uint64]bool{}
	var last uint64
	for i := 0; i < 3*total; i++ {
		resp, err := client.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusNoContent {
			break
		}
		if resp.StatusCode != 200 {
			res.refused = true
			t.Errorf("after %s: GET = %d %s; log:\n%s", c.name, resp.StatusCode, body, s2.LogTail())
			return res
		}
		id, _ := strconv.ParseUint(resp.Header.Get("X-Message-Id"), 10, 64)
		key, exact := relKey(body)
		if !exact || acked[id] != key {
			res.bad++
			t.Errorf("after %s: bad record served: id %d body %.40q (acked as %q)", c.name, id, body, acked[id])
		}
		if id <= last {
			t.Errorf("after %s: id %d served after %d", c.name, id, last)
		}
		last = id
		delivered[id] = true
	}
	for id := range acked {
		if !popped[id] && !delivered[id] && !hit[id] {
			res.lostBeyond++
		}
		if popped[id] && delivered[id] && !c.cursorHit {
			t.Errorf("after %s: id %d popped before the damage came back", c.name, id)
		}
	}
	if res.lostBeyond > 0 {
		t.Errorf("after %s: %d acked messages that the damage did not touch were not delivered; log:\n%s", c.name, res.lostBeyond, s2.LogTail())
	}
	// A new message gets an id above every id ever handed out.
	resp, err := client.Post(url, "application/octet-stream", strings.NewReader("after"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	id, _ := strconv.ParseUint(resp.Header.Get("X-Message-Id"), 10, 64)
	if resp.StatusCode != 201 || id <= maxID {
		res.reused++
		t.Errorf("after %s: POST = %d with id %d; ids up to %d were handed out before", c.name, resp.StatusCode, id, maxID)
	}
	client.CloseIdleConnections()
	if _, err := s2.Term(proctest.ExitLimit); err != nil {
		t.Errorf("SIGTERM: %v", err)
	}
	res.opened = true
	t.Logf("%s: acked %d, popped before %d, damaged %d, delivered after %d, next id %d (max before %d)",
		c.name, total, popFirst, len(hit), len(delivered), id, maxID)
	_ = time.Second
	return res
}
