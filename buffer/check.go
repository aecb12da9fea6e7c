package buffer

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/dgraph-io/badger/v4/table"
	"github.com/dgraph-io/ristretto/v2/z"
)

// Badger opens a store's table files in goroutines of its own, and a
// damaged table (one truncated by a few bytes) makes it panic there
// (table.(*Table).initBiggestAndSmallest reads its index from the
// garbage at the file's end, before it verifies any checksum: even
// options.OnTableRead runs after it, and its VerifyChecksum dereferences
// a nil block on a damaged one). A panic in a goroutine that is not ours
// cannot be recovered, so each start would crash the same way. checkTables
// runs the same code on every table first, in our goroutine, where the
// panic becomes an error and the store is moved aside instead.

// errDamaged wraps what checkTables or a recovered panic found.
var errDamaged = errors.New("damaged store")

// checkTables opens every table of dir as Badger will (its index and its
// last block); full also verifies every block's checksum, which reads the
// whole store (done after starts that did not survive, see mark).
func checkTables(dir string, full bool) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil // Badger reports it
	}
	live, ok := manifestTables(dir)
	if !ok {
		return nil // no MANIFEST (Badger opens no table) or a damaged one (Badger refuses it)
	}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".sst") || e.IsDir() {
			continue
		}
		// A table the MANIFEST does not list (half written by a
		// compaction when the process died) is deleted by Badger, never
		// opened: it is no damage.
		if id, ok := parseTableID(e.Name()); !ok || !live[id] {
			continue
		}
		if err := checkTable(filepath.Join(dir, e.Name()), full); err != nil {
			return fmt.Errorf("%w: table %s: %v", errDamaged, e.Name(), err)
		}
	}
	return nil
}

func checkTable(path string, full bool) (err error) {
	if _, ok := parseTableID(filepath.Base(path)); !ok {
		return nil // not a name Badger opens
	}
	fd, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrPermission) {
			return nil // Badger reports it; a permission problem is not damage
		}
		return err
	}
	fi, err := fd.Stat()
	if err != nil {
		fd.Close()
		return err
	}
	if fi.Size() == 0 {
		fd.Close()
		return errors.New("empty table file")
	}
	mf, err := z.OpenMmapFileUsing(fd, 0, false)
	if err != nil {
		fd.Close()
		return err
	}
	// With a valid file name and no verification asked of it, OpenTable
	// never closes mf itself: it is closed here whatever happens.
	defer func() {
		_ = z.Munmap(mf.Data)
		_ = fd.Close()
	}()
	defer recoverAs(&err)
	t, err := table.OpenTable(mf, table.Options{ChkMode: options.NoVerification, Compression: options.None})
	if err != nil {
		return err
	}
	if full {
		return t.VerifyChecksum()
	}
	return nil
}

// manifestTables returns the tables dir's MANIFEST lists; ok is false
// when it cannot be read.
func manifestTables(dir string) (ids map[uint64]bool, ok bool) {
	f, err := os.Open(filepath.Join(dir, badger.ManifestFilename))
	if err != nil {
		return nil, false
	}
	defer f.Close()
	defer func() {
		if recover() != nil {
			ids, ok = nil, false
		}
	}()
	m, _, err := badger.ReplayManifestFile(f, 0, badger.DefaultOptions(dir))
	if err != nil {
		return nil, false
	}
	ids = make(map[uint64]bool, len(m.Tables))
	for id := range m.Tables {
		ids[id] = true
	}
	return ids, true
}

// parseTableID is table.ParseFileID without its assertion (a negative
// number panics there).
func parseTableID(name string) (uint64, bool) {
	n, ok := strings.CutSuffix(name, ".sst")
	if !ok || n == "" {
		return 0, false
	}
	var id uint64
	for _, c := range n {
		if c < '0' || c > '9' {
			return 0, false
		}
		id = id*10 + uint64(c-'0')
	}
	return id, true
}

// recoverAs turns a panic into *err (with where it happened).
func recoverAs(err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("%w: unreadable, Badger panics on it (%s)", errDamaged, firstLine(fmt.Sprint(r)))
	}
}

// firstLine is the first non-empty line of s: a panic's message, not
// the page of debugging output Badger adds to it.
func firstLine(s string) string {
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "==") {
			return l
		}
	}
	return s
}

// openChecked opens the Badger store of o after checking its tables; a
// panic in the opening goroutine (ours) is recovered as damage.
func openChecked(o Options, full bool) (db *badger.DB, err error) {
	if err := checkTables(o.Dir, full); err != nil {
		return nil, err
	}
	defer recoverAs(&err)
	return openDB(o)
}

// findHidden returns the complete batches within lo..hi (in segments
// segLo..segHi, and up to 8 after) that an iteration did not show: when
// a table's block is damaged, Badger's iterator silently ends that
// table's part, and only a seek past the damage reaches its later
// blocks. Where a seek lands in the damage, a binary search over the
// sequence numbers finds the first one past it. What stays unreachable
// is counted as lost by the caller.
func findHidden(txn *badger.Txn, lo, hi uint64, segLo, segHi uint32) []batchKey {
	var out []batchKey
	var lb loadedBatch
	// probe finds a complete batch holding a seq ≥ s within lo..hi.
	probe := func(s uint64) (batchKey, bool) {
		for seg := segLo; seg <= segHi+8 && seg >= segLo; seg++ {
			found, bad, _ := loadBatch(txn, seg, s, &lb)
			k := lb.key
			if bad != nil {
				k, found = *bad, true // its keys are there: the read counts it
			}
			if found && k.last >= s && k.first <= hi && k.first >= lo {
				return k, true
			}
		}
		return batchKey{}, false
	}
	for s := lo; s <= hi; {
		if k, ok := probe(s); ok {
			out = append(out, k)
			s, segLo = k.last+1, k.seg
			if k.last == ^uint64(0) {
				break
			}
			continue
		}
		// Nothing reachable from s: the smallest t > s from which a probe
		// finds a batch, if any.
		a, b := s+1, hi+1 // the first success is in a..b; b: none
		for a < b {
			mid := a + (b-a)/2
			if _, ok := probe(mid); ok {
				b = mid
			} else {
				a = mid + 1
			}
		}
		if a > hi {
			break
		}
		s = a
	}
	return out
}

// loadAt is loadBatch for a reader that knows seq is stored (neither
// delivered nor dropped, below limit): when the seek does not find the
// batch holding it, a damaged block may hide it and those after it, and
// the first batch there that a seek can reach (see findHidden) is loaded
// instead of the one found further on.
func loadAt(txn *badger.Txn, seg uint32, seq, limit uint64, lb *loadedBatch) (bool, *batchKey, error) {
	found, bad, err := loadBatch(txn, seg, seq, lb)
	if bad != nil || err != nil || (found && lb.key.first <= seq) {
		return found, bad, err
	}
	hi, segHi := limit, seg+1
	if found {
		hi, segHi = min(hi, lb.key.first-1), lb.key.seg
	}
	if hi < seq {
		return found, nil, nil
	}
	h := findHidden(txn, seq, hi, seg, segHi)
	if len(h) == 0 {
		return found, nil, nil
	}
	return loadBatch(txn, h[0].seg, h[0].first, lb)
}
