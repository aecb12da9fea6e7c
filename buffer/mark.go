package buffer

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
)

// The mark is a small file beside Badger's, in the store's directory,
// that says what the queue had accepted, so that a restart can count what
// was accepted but never stored: the messages a kill -9 or a crash took
// from memory (waiting while the disk was full, or within write_delay).
// It is written in place at offset 0 of a file allocated once, so a full
// file system does not stop it (no block is allocated to overwrite one),
// and it survives a kill -9 unsynced (the page cache outlives the
// process); it is fsynced with the store, so a power cut leaves it at
// most a sync interval behind, as the store itself.
//
// Its record: "EDGM", version 1, then accepted (the next sequence number
// to assign), live (messages accepted and not yet delivered or dropped:
// stored, staged or waiting), starts (opens in a row that did not reach
// Close or run surviveAfter), clean (1 when written by Close), and a
// CRC-32 of what precedes it. At the next start, live less what the store
// holds is what was lost: to a damage after a clean close, else to the
// crash.
const (
	markName    = "edged-mark"
	markSize    = 4096
	markRecord  = 4 + 4 + 8 + 8 + 4 + 4 + 4
	markVersion = 1
)

type mark struct {
	accepted, live uint64
	starts         uint32
	clean          bool
}

func (m mark) encode() []byte {
	b := make([]byte, 0, markRecord)
	b = append(b, "EDGM"...)
	b = binary.BigEndian.AppendUint32(b, markVersion)
	b = binary.BigEndian.AppendUint64(b, m.accepted)
	b = binary.BigEndian.AppendUint64(b, m.live)
	b = binary.BigEndian.AppendUint32(b, m.starts)
	clean := uint32(0)
	if m.clean {
		clean = 1
	}
	b = binary.BigEndian.AppendUint32(b, clean)
	return binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(b))
}

func decodeMark(b []byte) (mark, bool) {
	if len(b) < markRecord || string(b[:4]) != "EDGM" || binary.BigEndian.Uint32(b[4:8]) != markVersion {
		return mark{}, false
	}
	if crc32.ChecksumIEEE(b[:markRecord-4]) != binary.BigEndian.Uint32(b[markRecord-4:markRecord]) {
		return mark{}, false
	}
	m := mark{
		accepted: binary.BigEndian.Uint64(b[8:16]),
		live:     binary.BigEndian.Uint64(b[16:24]),
		starts:   binary.BigEndian.Uint32(b[24:28]),
		clean:    binary.BigEndian.Uint32(b[28:32]) == 1,
	}
	return m, true
}

// readMark reads dir's mark; ok is false when there is none (a new
// store, or one from before the mark) or it is damaged.
func readMark(dir string) (mark, bool) {
	f, err := os.Open(filepath.Join(dir, markName))
	if err != nil {
		return mark{}, false
	}
	defer f.Close()
	b := make([]byte, markRecord)
	if _, err := f.ReadAt(b, 0); err != nil {
		return mark{}, false
	}
	return decodeMark(b)
}

// markFile writes the mark in place.
type markFile struct {
	f    *os.File
	last mark
	dirt bool // written since the last sync
	once bool // last was written
}

// openMark opens (or creates, allocating it whole) dir's mark file and
// writes m into it.
func openMark(dir string, m mark) (*markFile, error) {
	path := filepath.Join(dir, markName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if fi, err := f.Stat(); err != nil || fi.Size() < markSize {
		// Allocate it whole now, while there may be room: later writes
		// only overwrite.
		if _, err := f.WriteAt(make([]byte, markSize), 0); err != nil {
			f.Close()
			return nil, err
		}
	}
	w := &markFile{f: f}
	if err := w.write(m); err != nil {
		f.Close()
		return nil, err
	}
	return w, w.sync()
}

// write writes m if it changed.
func (w *markFile) write(m mark) error {
	if w == nil || (w.once && m == w.last) {
		return nil
	}
	if _, err := w.f.WriteAt(m.encode(), 0); err != nil {
		return err
	}
	w.last, w.dirt, w.once = m, true, true
	return nil
}

func (w *markFile) sync() error {
	if w == nil || !w.dirt {
		return nil
	}
	w.dirt = false
	return w.f.Sync()
}

func (w *markFile) close() error {
	if w == nil {
		return nil
	}
	err := w.sync()
	return errors.Join(err, w.f.Close())
}
