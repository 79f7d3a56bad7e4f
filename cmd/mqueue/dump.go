package main

import (
	"bufio"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mqueue/mqueue/engine"
	"github.com/mqueue/mqueue/engine/format"
	"github.com/mqueue/mqueue/segment"
)

// `mqueue dump` reads a data directory offline and prints what is on disk.
//
// It only reads: it never takes the data directory's LOCK, never repairs,
// never finishes an interrupted deletion (which is why it lists segments
// itself rather than calling segment.List), so it is safe while a server
// runs. On a live queue the newest segment may show a torn tail that is only
// a batch being written at that moment; run it again to tell.
//
// # Text output
//
// One line per item, indented by level, fields as key=value (the payload
// preview is always the last field of a line, so that the "+N bytes" after
// it needs no quoting):
//
//	queue NAME
//	  cursor ok read_id=N seq=N slot=N | cursor absent|empty | cursor corrupt bytes=N
//	  hwm ok value=N | hwm absent | hwm corrupt bytes=N
//	  leases records=N held=N bad=N torn_bytes=N [held_ids=ID,...]  (only with a lease log; 20 ids at most)
//	  broken file=NAME bytes=N            (bytes a repair cut off a torn tail)
//	  deleting dir=NAME                   (a deletion a crash interrupted)
//	  segment NAME file=QUEUE/NAME/FILE
//	    record offset=N id=N enqueued=TIME expires=TIME|- size=N crc=ok preview="..." [+N bytes] [key="..."] [visible=TIME]
//	    corrupt offset=N id=N bytes=N crc=BAD reason="..." [stored_id=N] enqueued=... expires=... size=N preview="..."
//	    corrupt offset=N id=N count=N last_id=N bytes=N crc=BAD reason="..."  (a run of frames too short to hold a header, e.g. zero fill)
//	    corrupt offset=N id=N bytes=N frame=BAD reason="..."                   (the rest of the segment cannot be framed)
//	    error: MESSAGE
//	    summary base=N file=... bytes=N records=N good=N bad=N framing=N first_id=N|- last_id=N|- max_expiry=TIME|never|- tail=clean|torn|unread [tail_offset=N tail_bytes=N] meta=absent|agrees|disagrees|unreadable|unchecked [meta_detail="..."] [note="..."]
//	summary queues=N segments=N skipped=N records=N good=N bad=N framing=N torn=N errors=N problems=N limit_reached=BOOL
//
// TIME is RFC 3339 in UTC with milliseconds. "records" counts the frames
// read, good or bad; "good"/"bad" split them; "framing" is 1 when the
// segment ends in bytes that cannot be framed (not counted in "records").
// A torn tail is everything after the last good record, as segment.Scan
// defines it; the engine cuts it at the next start.
//
// # Preview
//
// The first 64 bytes of the payload: printable ASCII (0x20..0x7e) verbatim
// except '\' and '"', which are written \\ and \"; \n, \r and \t as such;
// every other byte as \xNN. When the payload is longer, the text line ends in
// "+N bytes" and JSON says "more_bytes": N.
//
// # JSON Lines (--json)
//
// One object per line, each with "type". Field names are stable; new fields
// may be added. Ids, offsets and sizes are numbers; times are given twice,
// as unix ms ("..._ms", 0 = none) and as RFC 3339 strings (null = none).
//
//	{"type":"queue","queue","cursor":{"state","read_id","seq","slot","bytes"},
//	 "hwm":{"state","value","bytes"},"leases":{"records","held":[ID],"bad","torn_bytes"} (only with a lease log),"broken":[{"file","bytes"}],"deleting":[NAME],"segments"}
//	  state: absent | empty | ok | corrupt | unreadable
//	{"type":"record","queue","segment","offset","id","enqueued_at","enqueued_at_ms",
//	 "expires_at","expires_at_ms","size","crc":"ok","preview","more_bytes"[,"payload_base64"]
//	 [,"batch_continues","idempotency_key","visible_at","visible_at_ms"]}
//	  payload_base64 only with --payload
//	{"type":"corrupt","queue","segment","offset","id","kind":"record"|"framing","count",
//	 "last_id","bytes","reason","stored"}
//	  id: the id the frame should hold; count > 1 for a run of short frames
//	  (ids id..last_id); bytes: of the frame(s), or to the end of the file for
//	  framing; stored: null, or what the bad record's header and payload say:
//	  {"id","enqueued_at","enqueued_at_ms","expires_at","expires_at_ms","size",
//	   "preview","more_bytes"[,"payload_base64"]}
//	{"type":"segment","queue","segment","name","file","bytes","records","good","bad",
//	 "framing_errors","first_id","last_id","max_expiry","max_expiry_ms","tail",
//	 "tail_offset","tail_bytes","meta","meta_detail","complete","note"}
//	  emitted after the segment's records; first_id/last_id/max_expiry null
//	  without good records; max_expiry "never" when a good record has no TTL;
//	  complete false when --limit stopped the read or it failed
//	{"type":"error","queue","segment","message"}   an I/O error; segment 0 = none
//	{"type":"summary","queues","segments","segments_skipped","records","good",
//	 "bad","framing_errors","torn_tails","errors","problems","limit_reached"}
//
// # Selection
//
// --from ID hides records (good or bad) below ID and does not read segments
// whose ids all lie below it; --limit N stops the dump before the (N+1)-th
// record or corrupt line. Summaries and --verify cover what was read.
//
// # Exit status
//
// 0 when the dump completed; 1 when an I/O error kept something from being
// read, or with --verify when a bad record, a framing error, a torn tail or a
// corrupt cursor or hwm file was found (one line each on stderr, naming
// queue, segment and offset); 2 for usage errors and an unusable data
// directory.

const (
	// previewBytes is how much of a payload a dump shows.
	previewBytes = 64
	// metaName is segment's (unexported) name for a sealed segment's summary.
	metaName = "meta"
	// The cursor and hwm formats belong to engine/cursor.go.
	cursorFileName = format.CursorFile
	hwmFileName    = format.HWMFile
	hwmSize        = format.HWMFileSize
	// maxTimeMs is 9999-12-31T23:59:59.999Z; larger values are not times.
	maxTimeMs = 253402300799999
)

// dumpOptions holds the parsed flags of `mqueue dump`.
type dumpOptions struct {
	data    string
	queue   string
	from    uint64
	limit   int
	json    bool
	verify  bool
	payload bool
}

func newDumpFlags(o *dumpOptions) *flag.FlagSet {
	fs := flag.NewFlagSet("mqueue dump", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	fs.StringVar(&o.data, "data", "./data", "data `directory`, one subdirectory per queue (read only; the lock is not taken)")
	fs.StringVar(&o.queue, "queue", "", "dump only the queue of this `name`; empty = every queue, in name order")
	fs.Uint64Var(&o.from, "from", 0, "hide records below this `id`; segments entirely below it are not read")
	fs.IntVar(&o.limit, "limit", 0, "stop after `N` record lines (good or bad) in total, 0 = no limit")
	fs.BoolVar(&o.json, "json", false, "print JSON Lines instead of text")
	fs.BoolVar(&o.verify, "verify", false, "exit 1 if a bad record, framing error, torn tail or corrupt cursor/hwm is found, listing each on stderr (the dump still goes to stdout)")
	fs.BoolVar(&o.payload, "payload", false, "with --json, add each payload in full as payload_base64")
	return fs
}

// parseDumpFlags parses args, then fills every flag not given from its
// MQUEUE_<FLAG> environment variable. It returns flag.ErrHelp for -h/--help.
func parseDumpFlags(args []string, lookupEnv func(string) (string, bool)) (*dumpOptions, error) {
	o := &dumpOptions{}
	fs := newDumpFlags(o)
	if err := parseWithEnv(fs, args, lookupEnv); err != nil {
		return nil, err
	}
	if o.limit < 0 {
		return nil, errors.New("invalid --limit: must not be negative")
	}
	if o.queue != "" && !engine.ValidQueueName(o.queue) {
		return nil, fmt.Errorf("invalid --queue %q: queue names match ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", o.queue)
	}
	if o.payload && !o.json {
		return nil, errors.New("--payload needs --json")
	}
	if o.data == "" {
		return nil, errors.New("invalid --data: empty")
	}
	return o, nil
}

func printDumpUsage(w io.Writer) {
	var o dumpOptions
	fs := newDumpFlags(&o)
	fmt.Fprintf(w, "Usage: mqueue dump [flags]\n\n")
	fmt.Fprintf(w, "Prints the records, segments, cursor and hwm of each queue, reading the files\n")
	fmt.Fprintf(w, "directly: safe while a server runs. Every flag can also be set from the\n")
	fmt.Fprintf(w, "environment variable shown; the command line wins.\n\nFlags:\n")
	fs.VisitAll(func(f *flag.Flag) {
		typ, usage := flag.UnquoteUsage(f)
		fmt.Fprintf(w, "  --%s", f.Name)
		if typ != "" && typ != "value" {
			fmt.Fprintf(w, " %s", typ)
		}
		def := f.DefValue
		if def == "" {
			def = `""`
		}
		fmt.Fprintf(w, "\n    \t%s\n    \t(default %s, env %s)\n", usage, def, envName(f.Name))
	})
}

// runDump implements `mqueue dump`. It returns the process exit code.
func runDump(args []string, stdout, stderr io.Writer) int {
	return dumpMain(args, os.LookupEnv, stdout, stderr)
}

func dumpMain(args []string, lookupEnv func(string) (string, bool), stdout, stderr io.Writer) int {
	opts, err := parseDumpFlags(args, lookupEnv)
	if errors.Is(err, flag.ErrHelp) {
		printDumpUsage(stdout)
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "mqueue dump: %v\nRun 'mqueue dump --help' for the flags.\n", err)
		return 2
	}
	queues, err := listQueues(opts.data, opts.queue)
	if err != nil {
		fmt.Fprintf(stderr, "mqueue dump: %v\n", err)
		return 2
	}
	bw := bufio.NewWriterSize(stdout, 64<<10)
	d := &dumper{opts: opts, w: bw}
	if opts.json {
		d.enc = json.NewEncoder(bw)
		d.enc.SetEscapeHTML(false)
	}
	d.run(queues)
	if err := bw.Flush(); err != nil && d.werr == nil {
		d.werr = err
	}
	if d.werr != nil {
		fmt.Fprintf(stderr, "mqueue dump: write output: %v\n", d.werr)
		return 1
	}
	code := 0
	for _, p := range d.problems {
		if opts.verify || p.io {
			fmt.Fprintf(stderr, "mqueue dump: %s\n", p.text)
			code = 1
		}
	}
	return code
}

// listQueues returns the queue directories to dump, in name order.
func listQueues(data, only string) ([]string, error) {
	fi, err := os.Stat(data)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("data directory %s does not exist (set --data or MQUEUE_DATA)", data)
	}
	if err != nil {
		return nil, fmt.Errorf("data directory %s: %w", data, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("data directory %s is not a directory", data)
	}
	if only != "" {
		fi, err := os.Stat(filepath.Join(data, only))
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("queue %s: no directory %s in data directory %s", only, only, data)
		}
		if err != nil {
			return nil, fmt.Errorf("queue %s: %w", only, err)
		}
		if !fi.IsDir() {
			return nil, fmt.Errorf("queue %s: %s is not a directory", only, filepath.Join(data, only))
		}
		return []string{only}, nil
	}
	ents, err := os.ReadDir(data)
	if err != nil {
		return nil, fmt.Errorf("read data directory %s: %w", data, err)
	}
	var names []string
	for _, e := range ents {
		if e.IsDir() && engine.ValidQueueName(e.Name()) {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	return names, nil
}

// Events, one per output line. The JSON field names are documented at the
// top of this file and are part of the command's interface.

type cursorInfo struct {
	State  string `json:"state"`
	ReadID uint64 `json:"read_id"`
	Seq    uint64 `json:"seq"`
	Slot   int    `json:"slot"`
	Bytes  int64  `json:"bytes"`
}

type hwmInfo struct {
	State string `json:"state"`
	Value uint64 `json:"value"`
	Bytes int64  `json:"bytes"`
}

// leasesInfo is a queue's lease log: its records, the ids leased and not
// done (held: delivered again after a restart if below the cursor), and
// the records whose CRC failed (bad) or that a crash cut short (torn
// bytes at the end).
type leasesInfo struct {
	Records int      `json:"records"`
	Held    []uint64 `json:"held"`
	Bad     int      `json:"bad"`
	Torn    int      `json:"torn_bytes"`
}

type fileInfo struct {
	File  string `json:"file"`
	Bytes int64  `json:"bytes"`
}

type queueEvent struct {
	Type     string      `json:"type"`
	Queue    string      `json:"queue"`
	Cursor   cursorInfo  `json:"cursor"`
	HWM      hwmInfo     `json:"hwm"`
	Leases   *leasesInfo `json:"leases,omitempty"` // no lease log: never leased
	Broken   []fileInfo  `json:"broken"`
	Deleting []string    `json:"deleting"`
	Segments int         `json:"segments"`
}

// segmentStart only has a text form: JSON gives everything in the segment
// event after the records.
type segmentStart struct {
	name, file string
}

type recordEvent struct {
	Type          string  `json:"type"`
	Queue         string  `json:"queue"`
	Segment       uint64  `json:"segment"`
	Offset        int64   `json:"offset"`
	ID            uint64  `json:"id"`
	EnqueuedAt    string  `json:"enqueued_at"`
	EnqueuedAtMs  int64   `json:"enqueued_at_ms"`
	ExpiresAt     *string `json:"expires_at"`
	ExpiresAtMs   int64   `json:"expires_at_ms"`
	Size          int     `json:"size"`
	CRC           string  `json:"crc"`
	Preview       string  `json:"preview"`
	MoreBytes     int     `json:"more_bytes"`
	PayloadBase64 *string `json:"payload_base64,omitempty"`
	// BatchContinues: the record's atomic batch (a batch POST) goes on
	// after it (segment.Record.More).
	BatchContinues bool `json:"batch_continues,omitempty"`
	// IdempotencyKey is the Idempotency-Key the message was POSTed with
	// (printable ASCII by the API's check; shown escaped like a preview).
	IdempotencyKey *string `json:"idempotency_key,omitempty"`
	// VisibleAt is when a delayed message (POST ?delay=N) may first be
	// delivered; absent for one without a delay.
	VisibleAt   *string `json:"visible_at,omitempty"`
	VisibleAtMs int64   `json:"visible_at_ms,omitempty"`
}

type storedHeader struct {
	ID            uint64  `json:"id"`
	EnqueuedAt    string  `json:"enqueued_at"`
	EnqueuedAtMs  int64   `json:"enqueued_at_ms"`
	ExpiresAt     *string `json:"expires_at"`
	ExpiresAtMs   int64   `json:"expires_at_ms"`
	Size          int     `json:"size"`
	Preview       string  `json:"preview"`
	MoreBytes     int     `json:"more_bytes"`
	PayloadBase64 *string `json:"payload_base64,omitempty"`
	// BatchContinues: the record's atomic batch (a batch POST) goes on
	// after it (segment.Record.More).
	BatchContinues bool `json:"batch_continues,omitempty"`
}

type corruptEvent struct {
	Type    string        `json:"type"`
	Queue   string        `json:"queue"`
	Segment uint64        `json:"segment"`
	Offset  int64         `json:"offset"`
	ID      uint64        `json:"id"`
	Kind    string        `json:"kind"` // record | framing
	Count   int           `json:"count"`
	LastID  uint64        `json:"last_id"`
	Bytes   int64         `json:"bytes"`
	Reason  string        `json:"reason"`
	Stored  *storedHeader `json:"stored"`
}

type segmentEvent struct {
	Type          string  `json:"type"`
	Queue         string  `json:"queue"`
	Segment       uint64  `json:"segment"`
	Name          string  `json:"name"`
	File          string  `json:"file"`
	Bytes         int64   `json:"bytes"`
	Records       uint64  `json:"records"`
	Good          uint64  `json:"good"`
	Bad           uint64  `json:"bad"`
	FramingErrors int     `json:"framing_errors"`
	FirstID       *uint64 `json:"first_id"`
	LastID        *uint64 `json:"last_id"`
	MaxExpiry     *string `json:"max_expiry"`
	MaxExpiryMs   int64   `json:"max_expiry_ms"`
	Tail          string  `json:"tail"` // clean | zero-filled | torn | unread
	TailOffset    int64   `json:"tail_offset"`
	TailBytes     int64   `json:"tail_bytes"`
	Meta          string  `json:"meta"` // absent | agrees | disagrees | unreadable | unchecked
	MetaDetail    string  `json:"meta_detail"`
	Complete      bool    `json:"complete"`
	Note          string  `json:"note"`
}

type errorEvent struct {
	Type    string `json:"type"`
	Queue   string `json:"queue"`
	Segment uint64 `json:"segment"`
	Message string `json:"message"`
}

type summaryEvent struct {
	Type            string `json:"type"`
	Queues          int    `json:"queues"`
	Segments        int    `json:"segments"`
	SegmentsSkipped int    `json:"segments_skipped"`
	Records         uint64 `json:"records"`
	Good            uint64 `json:"good"`
	Bad             uint64 `json:"bad"`
	FramingErrors   int    `json:"framing_errors"`
	TornTails       int    `json:"torn_tails"`
	Errors          int    `json:"errors"`
	Problems        int    `json:"problems"`
	LimitReached    bool   `json:"limit_reached"`
}

// problem is one line of --verify's report.
type problem struct {
	text   string
	io     bool  // an I/O error: reported and exit 1 even without --verify
	offset int64 // in its segment, -1 when not about a segment's bytes
}

type dumper struct {
	opts     *dumpOptions
	w        *bufio.Writer
	enc      *json.Encoder
	werr     error
	problems []problem
	sum      summaryEvent
	shown    int // record and corrupt lines printed, for --limit
}

func (d *dumper) limitReached() bool { return d.opts.limit > 0 && d.shown >= d.opts.limit }

func (d *dumper) run(queues []string) {
	d.sum = summaryEvent{Type: "summary"}
	for i, q := range queues {
		if d.werr != nil {
			return
		}
		if d.limitReached() && i > 0 {
			d.sum.LimitReached = true
			break
		}
		if !d.queue(q) {
			break
		}
	}
	d.emit(&d.sum)
}

// queue dumps one queue; it returns false when --limit stopped the dump.
func (d *dumper) queue(name string) bool {
	dir := filepath.Join(d.opts.data, name)
	d.sum.Queues++
	ev := queueEvent{Type: "queue", Queue: name, Broken: []fileInfo{}, Deleting: []string{}}
	var cursorErr, hwmErr error
	ev.Cursor, cursorErr = readCursor(dir)
	ev.HWM, hwmErr = readHWM(dir)
	if ev.Cursor.State == "corrupt" {
		d.addProblem(problem{text: fmt.Sprintf("queue %s file %s: corrupt: no valid slot in %d bytes", name, cursorFileName, ev.Cursor.Bytes), offset: -1})
	}
	if ev.HWM.State == "corrupt" {
		d.addProblem(problem{text: fmt.Sprintf("queue %s file %s: corrupt: %d bytes, want %d with a valid crc32c", name, hwmFileName, ev.HWM.Bytes, hwmSize), offset: -1})
	}
	var leasesErr error
	ev.Leases, leasesErr = readLeases(dir)
	if ev.Leases != nil && ev.Leases.Bad > 0 {
		d.addProblem(problem{text: fmt.Sprintf("queue %s file %s: %d corrupt records", name, leasesFileName, ev.Leases.Bad), offset: -1})
	}
	ents, err := os.ReadDir(dir)
	var bases []uint64
	for _, e := range ents {
		n := e.Name()
		switch {
		case e.IsDir() && strings.HasSuffix(n, ".deleting"):
			ev.Deleting = append(ev.Deleting, escape([]byte(n)))
		case e.IsDir():
			if base, ok := parseSegmentName(n); ok {
				bases = append(bases, base)
			}
		case strings.HasSuffix(n, ".broken"):
			var size int64
			if info, err := e.Info(); err == nil {
				size = info.Size()
			}
			ev.Broken = append(ev.Broken, fileInfo{File: escape([]byte(n)), Bytes: size})
		}
	}
	slices.Sort(bases)
	ev.Segments = len(bases)
	d.emit(&ev)
	if cursorErr != nil {
		d.ioError(name, 0, fmt.Sprintf("queue %s: read %s: %v", name, cursorFileName, cursorErr))
	}
	if hwmErr != nil {
		d.ioError(name, 0, fmt.Sprintf("queue %s: read %s: %v", name, hwmFileName, hwmErr))
	}
	if leasesErr != nil {
		d.ioError(name, 0, fmt.Sprintf("queue %s: read %s: %v", name, leasesFileName, leasesErr))
	}
	if err != nil {
		d.ioError(name, 0, fmt.Sprintf("queue %s: list segments: %v", name, err))
		return true
	}
	for i, base := range bases {
		if d.werr != nil {
			return false
		}
		next := uint64(0)
		if i+1 < len(bases) {
			next = bases[i+1]
		}
		if d.belowFrom(dir, base, next) {
			d.sum.SegmentsSkipped++
			continue
		}
		if d.limitReached() {
			d.sum.LimitReached = true
			return false
		}
		if !d.segment(name, dir, base) {
			return false
		}
	}
	return true
}

// belowFrom reports whether every id of the segment lies below --from, as
// told by the next segment's base or by a meta file that matches the file.
func (d *dumper) belowFrom(dir string, base, next uint64) bool {
	if d.opts.from == 0 {
		return false
	}
	if next != 0 && next <= d.opts.from {
		return true
	}
	if m, ok := segment.ReadMeta(dir, base); ok && m.Records > 0 && m.LastID() < d.opts.from {
		return true
	}
	return false
}

// parseSegmentName returns the base id of a segment directory name (20
// decimal digits, not zero), as segment names them.
func parseSegmentName(name string) (uint64, bool) {
	if len(name) != 20 || strings.Trim(name, "0123456789") != "" {
		return 0, false
	}
	base, err := strconv.ParseUint(name, 10, 64)
	return base, err == nil && base > 0 && segment.Name(base) == name
}

// segState accumulates what one pass over a segment found.
type segState struct {
	sum       segment.Summary // as segment.Scan: up to the last good record
	good, bad uint64
	framing   int
	firstID   uint64
	lastID    uint64
	validSize int64
	tail      *segment.TailTracker // segment's rule of a torn tail, over the walk
	run       *corruptEvent
	problems  []problem
}

// segment dumps one segment; it returns false when --limit stopped the dump.
func (d *dumper) segment(queue, dir string, base uint64) bool {
	name := segment.Name(base)
	path := segment.DataPath(dir, base)
	rel := filepath.ToSlash(filepath.Join(queue, name, filepath.Base(path)))
	d.sum.Segments++
	d.emitText(segmentStart{name: name, file: rel})
	ev := segmentEvent{Type: "segment", Queue: queue, Segment: base, Name: name, File: rel, Tail: "unread", Meta: "unchecked"}

	// The Reader checks the records; raw, a second handle, shows what a bad
	// record holds. Once both are open a deletion by a running server no
	// longer matters.
	var raw *os.File
	r, err := segment.OpenReader(dir, base)
	if err == nil {
		if raw, err = os.Open(path); err != nil {
			r.Close()
		}
	}
	if err != nil {
		switch {
		case !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, segment.ErrNotFound):
			d.ioError(queue, base, fmt.Sprintf("queue %s segment %s: open: %v", queue, name, err))
		case dirGone(segment.Dir(dir, base)):
			// A running server deleted it (consumed or expired) meanwhile.
			ev.Note = "segment deleted while the dump ran"
		default:
			ev.Note = "records file missing"
			d.addProblem(problem{text: fmt.Sprintf("queue %s segment %s offset 0: records file %s missing", queue, name, rel), offset: 0})
		}
		d.emit(&ev)
		return true
	}
	defer r.Close()
	defer raw.Close()

	st := &segState{sum: segment.Summary{Base: base}, tail: segment.NewTailTracker(0)}
	complete, stopped := d.readRecords(queue, name, base, r, raw, st)
	d.flushRun(st)

	size := int64(-1)
	if fi, err := raw.Stat(); err == nil {
		size = fi.Size()
	}
	ev.Bytes = max(size, r.Offset(), st.validSize)
	ev.Records = r.NextID() - base
	ev.Good, ev.Bad, ev.FramingErrors = st.good, st.bad, st.framing
	if st.good > 0 {
		ev.FirstID, ev.LastID = &st.firstID, &st.lastID
		ev.MaxExpiryMs = st.sum.MaxExpiry
		s := formatMaxExpiry(st.sum.MaxExpiry)
		ev.MaxExpiry = &s
	}
	d.sum.Records += ev.Records
	d.sum.Good += st.good
	d.sum.Bad += st.bad
	d.sum.FramingErrors += st.framing
	ev.Complete = complete
	if complete {
		ev.Tail = "clean"
		torn, cut := st.tail.Torn()
		if z := r.ZeroTail(); z > 0 && !torn {
			// The writer's preallocated space after the last record (a
			// running server's active segment, or one left by a crash).
			ev.Tail, ev.TailOffset, ev.TailBytes = "zero-filled", r.Offset(), z
		}
		if torn {
			// segment's rule (TailTracker, as Scan and Repair): after the
			// last good record that ends its batch, bad frames or a batch
			// whose last record is missing (a crash cut its write short)
			// are a torn tail; the server cuts it at its next start. One
			// problem line for all of it.
			at := st.tail.ValidEnd()
			ev.Tail, ev.TailOffset, ev.TailBytes = "torn", at, max(ev.Bytes-at, 0)
			d.sum.TornTails++
			st.problems = slices.DeleteFunc(st.problems, func(p problem) bool { return p.offset >= at })
			what := fmt.Sprintf("%d bytes after the last good record", ev.TailBytes)
			if cut {
				what = fmt.Sprintf("an atomic batch cut short (its last record is missing), %d bytes; the server cuts it at its next start", ev.TailBytes)
			}
			st.problems = append(st.problems, problem{offset: at, text: fmt.Sprintf(
				"queue %s segment %s offset %d: torn tail: %s", queue, name, at, what)})
		}
		st.sum.Bytes = ev.Bytes
		ev.Meta, ev.MetaDetail = checkMeta(dir, base, &st.sum)
	}
	for _, p := range st.problems {
		d.addProblem(p)
	}
	d.emit(&ev)
	return !stopped
}

// readRecords reads the segment to its end, printing its records. complete
// is false when --limit or an I/O error cut the read short; stopped when it
// was --limit.
func (d *dumper) readRecords(queue, name string, base uint64, r *segment.Reader, raw *os.File, st *segState) (complete, stopped bool) {
	for f, err := range r.Frames() {
		if d.werr != nil {
			return false, true
		}
		if err != nil {
			d.flushRun(st)
			d.ioError(queue, base, fmt.Sprintf("queue %s segment %s offset %d: %v", queue, name, f.Offset, err))
			return false, false
		}
		at, rec, ce := f.Offset, f.Record, f.Err
		ended := st.tail.Add(f)
		switch {
		case ce == nil:
			d.flushRun(st)
			st.good++
			if st.good == 1 {
				st.firstID = rec.ID
			}
			st.lastID = rec.ID
			st.sum.Add(&rec)
			st.sum.Records = r.NextID() - base
			st.validSize = f.End
			if ended {
				for i := range st.problems {
					st.problems[i].offset = -1 // mid-segment, not part of a tail
				}
			}
			if rec.ID < d.opts.from {
				continue
			}
			if d.limitReached() {
				d.sum.LimitReached = true
				return false, true
			}
			d.shown++
			d.emit(d.recordEvent(queue, base, at, &rec))
		case ce.Framing():
			d.flushRun(st)
			st.framing = 1
			ev := &corruptEvent{Type: "corrupt", Queue: queue, Segment: base, Offset: ce.Offset, ID: ce.ID,
				Kind: "framing", Count: 1, LastID: ce.ID, Reason: ce.Err.Error()}
			if fi, err := raw.Stat(); err == nil {
				ev.Bytes = max(fi.Size()-ce.Offset, 0)
			}
			st.problems = append(st.problems, problem{offset: ce.Offset, text: fmt.Sprintf(
				"queue %s segment %s offset %d: unreadable frame (id %d): %v", queue, name, ce.Offset, ce.ID, ce.Err)})
			// Framing errors are shown whatever --from and --limit say:
			// they hide the rest of the segment.
			d.shown++
			d.emit(ev)
			return true, false
		default:
			st.bad++
			frameBytes := f.End - ce.Offset
			reason := reasonText(ce)
			stored := d.readStored(raw, ce.Offset, frameBytes)
			if stored == nil && st.run != nil && st.run.Reason == reason && st.run.Offset+st.run.Bytes == ce.Offset {
				// Zero-filled pages are a frame per byte: one line for the run.
				st.run.Count++
				st.run.LastID = ce.ID
				st.run.Bytes += frameBytes
				continue
			}
			d.flushRun(st)
			ev := &corruptEvent{Type: "corrupt", Queue: queue, Segment: base, Offset: ce.Offset, ID: ce.ID,
				Kind: "record", Count: 1, LastID: ce.ID, Bytes: frameBytes, Reason: reason, Stored: stored}
			if stored == nil {
				st.run = ev // printed when the run ends
				continue
			}
			st.problems = append(st.problems, problem{offset: ce.Offset, text: fmt.Sprintf(
				"queue %s segment %s offset %d: bad record (id %d): %s", queue, name, ce.Offset, ce.ID, reason)})
			if ce.ID < d.opts.from {
				continue
			}
			if d.limitReached() {
				d.sum.LimitReached = true
				return false, true
			}
			d.shown++
			d.emit(ev)
		}
	}
	return true, false // the clean end of the file
}

// reasonText is a CorruptionError's reason without the "segment: corrupt
// record: " that every bad record's reason starts with.
func reasonText(ce *segment.CorruptionError) string {
	return strings.TrimPrefix(ce.Err.Error(), segment.ErrCorrupt.Error()+": ")
}

// flushRun prints a pending run of short bad frames.
func (d *dumper) flushRun(st *segState) {
	ev := st.run
	if ev == nil {
		return
	}
	st.run = nil
	what := "bad record"
	if ev.Count > 1 {
		what = fmt.Sprintf("%d bad records (%d bytes)", ev.Count, ev.Bytes)
	}
	st.problems = append(st.problems, problem{offset: ev.Offset, text: fmt.Sprintf(
		"queue %s segment %s offset %d: %s (id %d): %s", ev.Queue, segment.Name(ev.Segment), ev.Offset, what, ev.ID, ev.Reason)})
	if ev.LastID < d.opts.from {
		return
	}
	// A run is printed even past --limit: it was read before the limit
	// could be checked, and hiding it would hide corruption.
	d.shown++
	d.emit(ev)
}

// readStored decodes, without trusting it, the header and payload of the bad
// record whose frame of frameBytes starts at off: what an operator needs to
// judge it. It returns nil when the frame is too short to hold a header.
func (d *dumper) readStored(raw *os.File, off, frameBytes int64) *storedHeader {
	want := frameBytes
	if !d.opts.payload {
		want = min(want, int64(binary.MaxVarintLen64+segment.HeaderSize+previewBytes))
	}
	// Never more than the file holds from off: the frame's length is
	// what the damaged file says.
	fi, err := raw.Stat()
	if err != nil || want <= 0 || want > fi.Size()-off {
		return nil
	}
	buf := make([]byte, want)
	n, err := raw.ReadAt(buf, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil
	}
	h, ok := segment.ReadStoredHeader(buf[:n], frameBytes)
	if !ok {
		return nil
	}
	payloadLen, payload := h.RestLen, h.Rest
	s := &storedHeader{
		ID:           h.ID,
		EnqueuedAt:   formatTime(h.EnqueuedAt),
		EnqueuedAtMs: h.EnqueuedAt,
		ExpiresAt:    expiry(h.ExpiresAt),
		ExpiresAtMs:  h.ExpiresAt,
		Size:         payloadLen,
	}
	s.Preview, _ = preview(payload)
	s.MoreBytes = max(payloadLen-previewBytes, 0)
	if d.opts.payload && len(payload) == payloadLen {
		b := base64.StdEncoding.EncodeToString(payload)
		s.PayloadBase64 = &b
	}
	return s
}

func (d *dumper) recordEvent(queue string, base uint64, off int64, rec *segment.Record) *recordEvent {
	ev := &recordEvent{
		Type: "record", Queue: queue, Segment: base, Offset: off, ID: rec.ID,
		EnqueuedAt: formatTime(rec.EnqueuedAt), EnqueuedAtMs: rec.EnqueuedAt,
		ExpiresAt: expiry(rec.ExpiresAt), ExpiresAtMs: rec.ExpiresAt,
		Size: len(rec.Payload), CRC: "ok", BatchContinues: rec.More,
	}
	if len(rec.Key) > 0 {
		k := escape(rec.Key)
		ev.IdempotencyKey = &k
	}
	if rec.VisibleAt != 0 {
		v := formatTime(rec.VisibleAt)
		ev.VisibleAt, ev.VisibleAtMs = &v, rec.VisibleAt
	}
	ev.Preview, ev.MoreBytes = preview(rec.Payload)
	if d.opts.payload {
		b := base64.StdEncoding.EncodeToString(rec.Payload)
		ev.PayloadBase64 = &b
	}
	return ev
}

// checkMeta compares a segment's meta file with what the dump read.
func checkMeta(dir string, base uint64, got *segment.Summary) (state, detail string) {
	data, err := os.ReadFile(filepath.Join(segment.Dir(dir, base), metaName))
	if errors.Is(err, fs.ErrNotExist) {
		return "absent", ""
	}
	if err != nil {
		return "unreadable", err.Error()
	}
	var m segment.Summary
	if err := json.Unmarshal(data, &m); err != nil {
		return "unreadable", fmt.Sprintf("invalid JSON: %v", err)
	}
	var diffs []string
	diff := func(field string, meta, read any) {
		if meta != read {
			diffs = append(diffs, fmt.Sprintf("%s meta=%v read=%v", field, meta, read))
		}
	}
	diff("base", m.Base, got.Base)
	diff("bytes", m.Bytes, got.Bytes)
	diff("records", m.Records, got.Records)
	diff("max_expiry", m.MaxExpiry, got.MaxExpiry)
	diff("first_enqueued", m.FirstEnqueued, got.FirstEnqueued)
	diff("last_enqueued", m.LastEnqueued, got.LastEnqueued)
	diff("last_keyed", m.LastKeyed, got.LastKeyed)
	if len(diffs) > 0 {
		return "disagrees", strings.Join(diffs, ", ")
	}
	return "agrees", ""
}

// readCursor reads a queue's cursor file as the engine does: two slots,
// the valid one with the higher seq wins.
func readCursor(dir string) (cursorInfo, error) {
	f, err := os.Open(filepath.Join(dir, cursorFileName))
	if errors.Is(err, fs.ErrNotExist) {
		return cursorInfo{State: "absent"}, nil
	}
	if err != nil {
		return cursorInfo{State: "unreadable"}, err
	}
	defer f.Close()
	var raw [format.CursorFileSize]byte
	n, err := f.ReadAt(raw[:], 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return cursorInfo{State: "unreadable"}, err
	}
	c := cursorInfo{State: "corrupt", Bytes: int64(n)}
	if fi, err := f.Stat(); err == nil {
		c.Bytes = fi.Size()
	}
	if n == 0 {
		c.State = "empty"
		return c, nil
	}
	if readID, seq, slot, ok := format.DecodeCursor(raw[:n]); ok {
		c.State, c.Seq, c.ReadID, c.Slot = "ok", seq, readID, slot
	}
	return c, nil
}

// readHWM reads a queue's hwm file: u64 LE and the crc32c of those 8 bytes.
func readHWM(dir string) (hwmInfo, error) {
	f, err := os.Open(filepath.Join(dir, hwmFileName))
	if errors.Is(err, fs.ErrNotExist) {
		return hwmInfo{State: "absent"}, nil
	}
	if err != nil {
		return hwmInfo{State: "unreadable"}, err
	}
	defer f.Close()
	var b [hwmSize + 1]byte
	n, err := io.ReadFull(f, b[:])
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return hwmInfo{State: "unreadable"}, err
	}
	h := hwmInfo{State: "corrupt", Bytes: int64(n)}
	if fi, err := f.Stat(); err == nil {
		h.Bytes = fi.Size()
	}
	if v, ok := format.DecodeHWM(b[:n]); ok {
		h.State, h.Value = "ok", v
	}
	return h, nil
}

// leasesFileName is the queue's lease log.
const leasesFileName = format.LeasesFile

// readLeases reads a queue's lease log as the engine does at start; nil
// when there is none.
func readLeases(dir string) (*leasesInfo, error) {
	raw, err := os.ReadFile(filepath.Join(dir, leasesFileName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	count, done, bad, torn := format.DecodeLeaseLog(raw)
	li := &leasesInfo{Records: len(raw) / format.LeaseRecordSize, Bad: bad, Torn: torn, Held: []uint64{}}
	for id := range count {
		if !done[id] {
			li.Held = append(li.Held, id)
		}
	}
	slices.Sort(li.Held)
	return li, nil
}

func dirGone(dir string) bool {
	_, err := os.Stat(dir)
	return errors.Is(err, fs.ErrNotExist)
}

func (d *dumper) addProblem(p problem) { d.problems = append(d.problems, p); d.sum.Problems++ }

func (d *dumper) ioError(queue string, base uint64, msg string) {
	d.addProblem(problem{text: msg, io: true, offset: -1})
	d.sum.Errors++
	d.emit(&errorEvent{Type: "error", Queue: queue, Segment: base, Message: msg})
}

// preview returns the escaped first previewBytes of p and how many bytes
// it leaves out.
func preview(p []byte) (string, int) {
	if len(p) > previewBytes {
		return escape(p[:previewBytes]), len(p) - previewBytes
	}
	return escape(p), 0
}

// escape writes printable ASCII verbatim and everything else as an escape,
// so that a preview is one line of ASCII and can be put between quotes.
func escape(p []byte) string {
	const hex = "0123456789abcdef"
	var b strings.Builder
	b.Grow(len(p))
	for _, c := range p {
		switch {
		case c == '\\':
			b.WriteString(`\\`)
		case c == '"':
			b.WriteString(`\"`)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\r':
			b.WriteString(`\r`)
		case c == '\t':
			b.WriteString(`\t`)
		case c >= 0x20 && c <= 0x7e:
			b.WriteByte(c)
		default:
			b.WriteString(`\x`)
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xf])
		}
	}
	return b.String()
}

// formatTime formats unix ms as RFC 3339 with milliseconds in UTC; a value
// no calendar holds (only a bad record has one) is shown as the number.
func formatTime(ms int64) string {
	if ms < 0 || ms > maxTimeMs {
		return fmt.Sprintf("invalid(%d)", ms)
	}
	return time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z07:00")
}

func expiry(ms int64) *string {
	if ms == 0 {
		return nil
	}
	s := formatTime(ms)
	return &s
}

func formatMaxExpiry(ms int64) string {
	switch ms {
	case segment.NeverExpires:
		return "never"
	case 0:
		return "-"
	}
	return formatTime(ms)
}

// emit prints one event as a JSON line or as text.
func (d *dumper) emit(ev any) {
	if d.werr != nil {
		return
	}
	if d.enc != nil {
		if err := d.enc.Encode(ev); err != nil {
			d.werr = err
		}
		return
	}
	d.emitText(ev)
}

func (d *dumper) emitText(ev any) {
	if d.werr != nil || d.enc != nil {
		return
	}
	var b strings.Builder
	switch e := ev.(type) {
	case *queueEvent:
		fmt.Fprintf(&b, "queue %s\n", e.Queue)
		switch c := e.Cursor; c.State {
		case "ok":
			fmt.Fprintf(&b, "  cursor ok read_id=%d seq=%d slot=%d\n", c.ReadID, c.Seq, c.Slot)
		case "corrupt", "empty":
			fmt.Fprintf(&b, "  cursor %s bytes=%d\n", c.State, c.Bytes)
		default:
			fmt.Fprintf(&b, "  cursor %s\n", c.State)
		}
		switch h := e.HWM; h.State {
		case "ok":
			fmt.Fprintf(&b, "  hwm ok value=%d\n", h.Value)
		case "corrupt":
			fmt.Fprintf(&b, "  hwm corrupt bytes=%d\n", h.Bytes)
		default:
			fmt.Fprintf(&b, "  hwm %s\n", h.State)
		}
		if l := e.Leases; l != nil {
			fmt.Fprintf(&b, "  leases records=%d held=%d bad=%d torn_bytes=%d", l.Records, len(l.Held), l.Bad, l.Torn)
			if len(l.Held) > 0 {
				ids := make([]string, 0, min(len(l.Held), 20))
				for _, id := range l.Held[:min(len(l.Held), 20)] {
					ids = append(ids, strconv.FormatUint(id, 10))
				}
				more := ""
				if len(l.Held) > 20 {
					more = ",..."
				}
				fmt.Fprintf(&b, " held_ids=%s%s", strings.Join(ids, ","), more)
			}
			b.WriteByte('\n')
		}
		for _, f := range e.Broken {
			fmt.Fprintf(&b, "  broken file=%s bytes=%d\n", f.File, f.Bytes)
		}
		for _, n := range e.Deleting {
			fmt.Fprintf(&b, "  deleting dir=%s\n", n)
		}
		if e.Segments == 0 {
			b.WriteString("  no segments\n")
		}
	case segmentStart:
		fmt.Fprintf(&b, "  segment %s file=%s\n", e.name, e.file)
	case *recordEvent:
		fmt.Fprintf(&b, "    record offset=%d id=%d enqueued=%s expires=%s size=%d crc=ok preview=\"%s\"",
			e.Offset, e.ID, e.EnqueuedAt, orDash(e.ExpiresAt), e.Size, e.Preview)
		if e.MoreBytes > 0 {
			fmt.Fprintf(&b, " +%d bytes", e.MoreBytes)
		}
		if e.IdempotencyKey != nil {
			fmt.Fprintf(&b, " key=\"%s\"", *e.IdempotencyKey)
		}
		if e.VisibleAt != nil {
			fmt.Fprintf(&b, " visible=%s", *e.VisibleAt)
		}
		b.WriteByte('\n')
	case *corruptEvent:
		fmt.Fprintf(&b, "    corrupt offset=%d id=%d", e.Offset, e.ID)
		if e.Count > 1 {
			fmt.Fprintf(&b, " count=%d last_id=%d", e.Count, e.LastID)
		}
		check := "crc"
		if e.Kind == "framing" {
			check = "frame"
		}
		fmt.Fprintf(&b, " bytes=%d %s=BAD reason=\"%s\"", e.Bytes, check, escape([]byte(e.Reason)))
		if s := e.Stored; s != nil {
			if s.ID != e.ID {
				fmt.Fprintf(&b, " stored_id=%d", s.ID)
			}
			fmt.Fprintf(&b, " enqueued=%s expires=%s size=%d preview=\"%s\"", s.EnqueuedAt, orDash(s.ExpiresAt), s.Size, s.Preview)
			if s.MoreBytes > 0 {
				fmt.Fprintf(&b, " +%d bytes", s.MoreBytes)
			}
		}
		b.WriteByte('\n')
	case *segmentEvent:
		if e.Note != "" && !e.Complete && e.Records == 0 && e.Bytes == 0 {
			// Nothing was read: say why and nothing else.
			fmt.Fprintf(&b, "    summary base=%d file=%s note=\"%s\"\n", e.Segment, e.File, e.Note)
			break
		}
		fmt.Fprintf(&b, "    summary base=%d file=%s bytes=%d records=%d good=%d bad=%d framing=%d first_id=%s last_id=%s max_expiry=%s tail=%s",
			e.Segment, e.File, e.Bytes, e.Records, e.Good, e.Bad, e.FramingErrors, idOrDash(e.FirstID), idOrDash(e.LastID), orDash(e.MaxExpiry), e.Tail)
		if e.Tail == "torn" || e.Tail == "zero-filled" {
			fmt.Fprintf(&b, " tail_offset=%d tail_bytes=%d", e.TailOffset, e.TailBytes)
		}
		fmt.Fprintf(&b, " meta=%s", e.Meta)
		if e.MetaDetail != "" {
			fmt.Fprintf(&b, " meta_detail=\"%s\"", escape([]byte(e.MetaDetail)))
		}
		if e.Note != "" {
			fmt.Fprintf(&b, " note=\"%s\"", e.Note)
		}
		b.WriteByte('\n')
	case *errorEvent:
		fmt.Fprintf(&b, "    error: %s\n", escape([]byte(e.Message)))
	case *summaryEvent:
		fmt.Fprintf(&b, "summary queues=%d segments=%d skipped=%d records=%d good=%d bad=%d framing=%d torn=%d errors=%d problems=%d limit_reached=%t\n",
			e.Queues, e.Segments, e.SegmentsSkipped, e.Records, e.Good, e.Bad, e.FramingErrors, e.TornTails, e.Errors, e.Problems, e.LimitReached)
	}
	if _, err := d.w.WriteString(b.String()); err != nil {
		d.werr = err
	}
}

func orDash(s *string) string {
	if s == nil {
		return "-"
	}
	return *s
}

func idOrDash(id *uint64) string {
	if id == nil {
		return "-"
	}
	return strconv.FormatUint(*id, 10)
}
