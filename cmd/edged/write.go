package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/edged-gw/edged/configs"
	"github.com/edged-gw/edged/internal/app"
	"github.com/edged-gw/edged/mapping"
	"github.com/edged-gw/edged/southbound"
)

func init() {
	register(command{"write", "-c FILE DEVICE TAG VALUE   write one tag (writable = true), read it back and print it", cmdWrite})
}

func cmdWrite(args []string, stdout, stderr io.Writer) int {
	stderr = &lockedWriter{w: stderr}
	fs := newFlags("write", stderr)
	path := fs.String("c", defaultConfig, "config file")
	wait := fs.Duration("timeout", 10*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() != 3 {
		fmt.Fprintln(stderr, "usage: edged write -c FILE DEVICE TAG VALUE")
		return exitUsage
	}
	devName, tagName, text := fs.Arg(0), fs.Arg(1), fs.Arg(2)
	logs := newLogging(stderr)
	cfg, err := configs.Load(*path, app.Drivers(logs.logger))
	if err != nil {
		printConfigError(stderr, *path, err)
		return exitConfig
	}
	var drv southbound.Driver
	for _, d := range cfg.Devices {
		if d.Name == devName {
			drv, _ = d.Settings.(southbound.Driver)
		}
	}
	if drv == nil {
		fmt.Fprintf(stderr, "edged write: no device %q in %s\n", devName, *path)
		return exitUsage
	}
	w, ok := drv.(southbound.Writer)
	if !ok {
		fmt.Fprintf(stderr, "edged write: device %q: its driver cannot write\n", devName)
		return exitUsage
	}
	var spec *mapping.Spec
	for _, s := range drv.Tags() {
		if s.Name == tagName {
			spec = s
		}
	}
	if spec == nil {
		fmt.Fprintf(stderr, "edged write: device %q has no tag %q\n", devName, tagName)
		return exitUsage
	}
	v, err := parseValue(spec, text)
	if err != nil {
		fmt.Fprintf(stderr, "edged write: %v\n", err)
		return exitUsage
	}
	ctx, cancel := context.WithTimeout(context.Background(), *wait)
	defer cancel()
	s := &watchSink{tag: spec, polled: make(chan struct{}, 1)}
	if err := drv.Start(ctx, s); err != nil {
		fmt.Fprintf(stderr, "edged write: %v\n", err)
		return exitFailure
	}
	defer func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		drv.Stop(sctx)
	}()
	if err := w.Write(ctx, tagName, v); err != nil {
		fmt.Fprintf(stderr, "edged write: %v\n", err)
		if errors.Is(err, mapping.ErrWriteRefused) || errors.Is(err, mapping.ErrRange) {
			return exitUsage
		}
		return exitFailure
	}
	// Writes run between polls, so every poll delivered after Write
	// returned started after the write.
	after := s.count()
	for {
		select {
		case <-s.polled:
		case <-ctx.Done():
			fmt.Fprintf(stderr, "edged write: written, but no read back within %v\n", *wait)
			return exitFailure
		}
		smp, ok := s.last()
		if !ok || s.count() <= after {
			continue
		}
		if smp.Quality != mapping.Good {
			fmt.Fprintf(stderr, "edged write: written; read back failed: %v\n", smp.Err)
			return exitFailure
		}
		fmt.Fprintf(stdout, "%s/%s = %s (written %s, read back)\n", devName, tagName, showValue(smp.Value, spec), text)
		return exitOK
	}
}

// parseValue reads a command-line value for the tag's type.
func parseValue(spec *mapping.Spec, text string) (mapping.Value, error) {
	switch spec.Type {
	case mapping.TypeString:
		return mapping.Value{Kind: mapping.KindString, Str: text}, nil
	case mapping.TypeBool:
		switch strings.ToLower(text) {
		case "1", "true", "on":
			return mapping.Value{Kind: mapping.KindBool, Bool: true}, nil
		case "0", "false", "off":
			return mapping.Value{Kind: mapping.KindBool, Bool: false}, nil
		}
		return mapping.Value{}, fmt.Errorf("tag %q is a bool: write true/false, on/off or 1/0, not %q", spec.Name, text)
	}
	if i, err := strconv.ParseInt(text, 0, 64); err == nil {
		return mapping.Value{Kind: mapping.KindInt, Int: i}, nil
	}
	if u, err := strconv.ParseUint(text, 0, 64); err == nil {
		return mapping.Value{Kind: mapping.KindUint, Uint: u}, nil
	}
	if f, err := strconv.ParseFloat(text, 64); err == nil {
		return mapping.Value{Kind: mapping.KindFloat, Float: f}, nil
	}
	return mapping.Value{}, fmt.Errorf("tag %q is a %s: %q is not a number", spec.Name, spec.Type, text)
}

func showValue(v mapping.Value, spec *mapping.Spec) string {
	s := formatProbeValue(v)
	switch v.Kind {
	case mapping.KindBool:
		s = strconv.FormatBool(v.Bool)
	case mapping.KindString:
		s = strconv.Quote(v.Str)
	}
	if spec.Unit != "" {
		s += " " + spec.Unit
	}
	return s
}

// watchSink keeps the latest sample of one tag.
type watchSink struct {
	tag    *mapping.Spec
	polled chan struct{}
	mu     sync.Mutex
	smp    mapping.Sample
	ok     bool
	polls  int
}

func (s *watchSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.polls
}

func (s *watchSink) Samples(_ string, samples []mapping.Sample) {
	s.mu.Lock()
	s.polls++
	for _, smp := range samples {
		if smp.Tag == s.tag {
			s.smp, s.ok = smp, true
		}
	}
	s.mu.Unlock()
	select {
	case s.polled <- struct{}{}:
	default:
	}
}

func (s *watchSink) State(string, southbound.State, error) {}

func (s *watchSink) last() (mapping.Sample, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.smp, s.ok
}

// lockedWriter serialises writes of the device goroutines' logger and the
// command's own messages to one writer.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
