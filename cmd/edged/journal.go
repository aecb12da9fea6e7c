package main

// Logging to the systemd journal. Under systemd, edged's stderr is a stream
// to journald, which stamps every line with its own time and, when a line
// starts with a syslog priority prefix ("<4>"), strips it and files the line
// at that priority, so that `journalctl -p warning` shows warnings and
// errors only. Without the prefix every line is "info".

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"syscall"
)

// journalStream reports whether w is the stream systemd connected to
// journald: JOURNAL_STREAM holds "device:inode" of that stream, and it must
// be the very file w is (a child whose stderr was redirected inherits the
// variable, not the stream).
func journalStream(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	v := os.Getenv("JOURNAL_STREAM")
	if v == "" {
		return false
	}
	var dev, ino uint64
	if n, err := fmt.Sscanf(v, "%d:%d", &dev, &ino); n != 2 || err != nil {
		return false
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return false
	}
	return uint64(st.Dev) == dev && uint64(st.Ino) == ino // Dev is uint32 on some platforms
}

// journalPriority is the syslog priority prefix of a level: err, warning,
// info, debug.
func journalPriority(l slog.Level) string {
	switch {
	case l >= slog.LevelError:
		return "<3>"
	case l >= slog.LevelWarn:
		return "<4>"
	case l >= slog.LevelInfo:
		return "<6>"
	}
	return "<7>"
}

// dropTime leaves out the record's time: journald has its own.
func dropTime(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}

// newLogHandler is the process's log handler on w: text or JSON, and, when
// w is the journal, each line with its priority prefix and without a time.
func newLogHandler(w io.Writer, json bool, level slog.Leveler) slog.Handler {
	opts := &slog.HandlerOptions{Level: level}
	if !journalStream(w) {
		if json {
			return slog.NewJSONHandler(w, opts)
		}
		return slog.NewTextHandler(w, opts)
	}
	opts.ReplaceAttr = dropTime
	j := &journalHandler{line: &journalLine{out: w}}
	if json {
		j.inner = slog.NewJSONHandler(&j.line.buf, opts)
	} else {
		j.inner = slog.NewTextHandler(&j.line.buf, opts)
	}
	return j
}

// journalHandler writes each record as one line to the journal, starting
// with the priority prefix of its level.
type journalHandler struct {
	inner slog.Handler // writes into line.buf
	line  *journalLine // shared with the handlers derived by With
}

type journalLine struct {
	mu  sync.Mutex
	buf bytes.Buffer
	out io.Writer
}

func (h *journalHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

func (h *journalHandler) Handle(ctx context.Context, r slog.Record) error {
	h.line.mu.Lock()
	defer h.line.mu.Unlock()
	h.line.buf.Reset()
	h.line.buf.WriteString(journalPriority(r.Level))
	if err := h.inner.Handle(ctx, r); err != nil {
		return err
	}
	_, err := h.line.out.Write(h.line.buf.Bytes()) // one write: one journal entry
	return err
}

func (h *journalHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &journalHandler{inner: h.inner.WithAttrs(as), line: h.line}
}

func (h *journalHandler) WithGroup(name string) slog.Handler {
	return &journalHandler{inner: h.inner.WithGroup(name), line: h.line}
}
