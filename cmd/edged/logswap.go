package main

import (
	"context"
	"log/slog"
	"sync/atomic"
)

// swapHandler lets the process logger be made before the config is read
// and switched to the configured format afterwards, including loggers
// already derived from it with With or WithGroup.
type swapHandler struct {
	root *atomic.Pointer[slog.Handler]
	ops  []func(slog.Handler) slog.Handler
}

func (h *swapHandler) set(next slog.Handler) {
	if h.root == nil {
		h.root = new(atomic.Pointer[slog.Handler])
	}
	h.root.Store(&next)
}

func (h *swapHandler) current() slog.Handler {
	cur := *h.root.Load()
	for _, op := range h.ops {
		cur = op(cur)
	}
	return cur
}

func (h *swapHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return (*h.root.Load()).Enabled(ctx, l)
}

func (h *swapHandler) Handle(ctx context.Context, r slog.Record) error {
	return h.current().Handle(ctx, r)
}

func (h *swapHandler) derive(op func(slog.Handler) slog.Handler) *swapHandler {
	ops := make([]func(slog.Handler) slog.Handler, len(h.ops), len(h.ops)+1)
	copy(ops, h.ops)
	return &swapHandler{root: h.root, ops: append(ops, op)}
}

func (h *swapHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return h.derive(func(x slog.Handler) slog.Handler { return x.WithAttrs(as) })
}

func (h *swapHandler) WithGroup(name string) slog.Handler {
	return h.derive(func(x slog.Handler) slog.Handler { return x.WithGroup(name) })
}
