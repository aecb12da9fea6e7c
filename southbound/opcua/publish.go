package opcua

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gopcua/opcua"
	"github.com/gopcua/opcua/ua"
)

// The subscription's publishing is ours, not gopcua's: the library's
// publish loop keeps one PublishRequest outstanding, so a busy
// subscription gets one NotificationMessage (at most
// MaxNotificationsPerPublish values) per round trip — ~16,000 values/s
// from node-opcua on loopback. A publisher keeps up to publish_requests
// outstanding, acknowledges every message it receives, and hands the
// responses to the device goroutine, which applies them in sequence-number
// order (a sequencer): responses to concurrent requests can be handled out
// of order, and an older message must never overwrite a newer value.
//
// gopcua's own loop stays paused: it is resumed only by Client.Subscribe
// (not used: the subscription is created with a plain request) and by its
// auto-reconnect (off, see the package doc).

// subscription is one server-side subscription of a session.
type subscription struct {
	id       uint32
	interval time.Duration // revised publishing interval
	keepMax  uint32        // revised max keep-alive count
	token    *ua.NodeID    // the session's authentication token
}

// Requested subscription parameters: gopcua's defaults, as before the
// publisher (the keep-alive comes from our own Read every keepalive).
const (
	subLifetimeCount     = opcua.DefaultSubscriptionLifetimeCount
	subMaxKeepAliveCount = opcua.DefaultSubscriptionMaxKeepAliveCount
	subMaxNotifications  = opcua.DefaultSubscriptionMaxNotificationsPerPublish
)

// createSubscription asks for a subscription publishing every interval.
func (cn *conn) createSubscription(ctx context.Context, interval time.Duration) (*subscription, error) {
	req := &ua.CreateSubscriptionRequest{
		RequestedPublishingInterval: float64(interval / time.Millisecond),
		RequestedLifetimeCount:      subLifetimeCount,
		RequestedMaxKeepAliveCount:  subMaxKeepAliveCount,
		PublishingEnabled:           true,
		MaxNotificationsPerPublish:  subMaxNotifications,
	}
	var res *ua.CreateSubscriptionResponse
	sctx, cancel := context.WithTimeout(ctx, cn.timeout)
	defer cancel()
	err := cn.c.Send(sctx, req, func(v ua.Response) error {
		r, ok := v.(*ua.CreateSubscriptionResponse)
		if !ok {
			return fmt.Errorf("the server answered CreateSubscription with %T", v)
		}
		res = r
		return nil
	})
	if err != nil {
		return nil, err
	}
	if res.SubscriptionID == 0 {
		return nil, ua.StatusBadSubscriptionIDInvalid
	}
	// gopcua v0.8.0 has no accessor for the session's authentication
	// token; Send stamped it into the request header. PublishRequests need
	// it, sent with a timeout of their own (Client.Send would use the
	// request timeout, shorter than a keep-alive period).
	var token *ua.NodeID
	if h := req.Header(); h != nil {
		token = h.AuthenticationToken
	}
	return &subscription{id: res.SubscriptionID, token: token,
		interval: time.Duration(res.RevisedPublishingInterval * float64(time.Millisecond)),
		keepMax:  res.RevisedMaxKeepAliveCount}, nil
}

// monitor creates monitored items in the subscription.
func (cn *conn) monitor(ctx context.Context, sub *subscription, items []*ua.MonitoredItemCreateRequest) (*ua.CreateMonitoredItemsResponse, error) {
	req := &ua.CreateMonitoredItemsRequest{SubscriptionID: sub.id, TimestampsToReturn: ua.TimestampsToReturnBoth, ItemsToCreate: items}
	var res *ua.CreateMonitoredItemsResponse
	err := cn.c.Send(ctx, req, func(v ua.Response) error {
		r, ok := v.(*ua.CreateMonitoredItemsResponse)
		if !ok {
			return fmt.Errorf("the server answered CreateMonitoredItems with %T", v)
		}
		res = r
		return nil
	})
	return res, err
}

// published is one PublishResponse, or the error that ends publishing.
type published struct {
	res *ua.PublishResponse
	err error
}

// publisher keeps n PublishRequests outstanding for one subscription.
type publisher struct {
	c       *opcua.Client
	sub     *subscription
	timeout time.Duration // of one PublishRequest
	out     chan published
	sent    func() // counts a request sent

	mu   sync.Mutex
	acks []*ua.SubscriptionAcknowledgement // received, to acknowledge with the next request

	live atomic.Int32 // workers running
	wg   sync.WaitGroup
}

// startPublisher starts n workers; they stop when ctx ends (wait for them
// with wait).
func startPublisher(ctx context.Context, cn *conn, sub *subscription, n int, sent func()) *publisher {
	// With n requests queued and nothing to publish, the server answers
	// one of them with a keep-alive every keep-alive period, so the last
	// waits n periods.
	keep := time.Duration(max(sub.keepMax, 1)) * max(sub.interval, time.Millisecond)
	timeout := min(time.Duration(n+1)*keep+cn.timeout, 24*time.Hour)
	p := &publisher{c: cn.c, sub: sub, timeout: timeout, out: make(chan published, n), sent: sent}
	p.live.Store(int32(n))
	p.wg.Add(n)
	for range n {
		go p.run(ctx)
	}
	return p
}

func (p *publisher) wait() { p.wg.Wait() }

// takeAcks returns the acknowledgements to send and forgets them.
func (p *publisher) takeAcks() []*ua.SubscriptionAcknowledgement {
	p.mu.Lock()
	defer p.mu.Unlock()
	a := p.acks
	p.acks = nil
	if a == nil {
		a = []*ua.SubscriptionAcknowledgement{}
	}
	return a
}

// giveBack keeps acknowledgements a request did not deliver.
func (p *publisher) giveBack(a []*ua.SubscriptionAcknowledgement) {
	if len(a) == 0 {
		return
	}
	p.mu.Lock()
	p.acks = append(p.acks, a...)
	p.mu.Unlock()
}

func (p *publisher) ack(seq uint32) {
	p.mu.Lock()
	p.acks = append(p.acks, &ua.SubscriptionAcknowledgement{SubscriptionID: p.sub.id, SequenceNumber: seq})
	p.mu.Unlock()
}

// run is one worker: a PublishRequest, its response to out, again.
func (p *publisher) run(ctx context.Context) {
	defer p.wg.Done()
	for ctx.Err() == nil {
		acks := p.takeAcks()
		req := &ua.PublishRequest{SubscriptionAcknowledgements: acks}
		var res *ua.PublishResponse
		sc := p.c.SecureChannel()
		if sc == nil {
			p.report(ctx, published{err: ua.StatusBadServerNotConnected})
			return
		}
		p.sent()
		err := sc.SendRequestWithTimeout(ctx, req, p.sub.token, p.timeout, func(v ua.Response) error {
			r, ok := v.(*ua.PublishResponse)
			if !ok {
				return fmt.Errorf("the server answered Publish with %T", v)
			}
			res = r
			return nil
		})
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, ua.StatusBadTimeout):
			// The request expired (nothing to publish for as long as the
			// timeout hint); its acknowledgements may not have been seen.
			p.giveBack(acks)
			continue
		case errors.Is(err, ua.StatusBadTooManyPublishRequests):
			// The server's limit: one fewer in flight, down to one.
			p.giveBack(acks)
			if p.live.Add(-1) > 0 {
				return
			}
			p.live.Add(1)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		case err != nil:
			p.report(ctx, published{err: err})
			return
		}
		if m := res.NotificationMessage; m != nil && len(m.NotificationData) > 0 {
			p.ack(m.SequenceNumber)
		}
		p.report(ctx, published{res: res})
	}
}

func (p *publisher) report(ctx context.Context, r published) {
	select {
	case p.out <- r:
	case <-ctx.Done():
	}
}

// gapWait is how long a sequencer holds messages for an earlier one that
// has not arrived; past it the earlier one counts as lost (a late arrival
// still sets the tags no later message set).
const gapWait = time.Second

// sequencer puts the NotificationMessages of one subscription back into
// sequence-number order. Pure logic: the device goroutine owns it.
type sequencer struct {
	next  uint32 // the sequence number to apply next
	held  map[uint32]*ua.NotificationMessage
	since time.Time // when the oldest held message arrived
}

func newSequencer() *sequencer {
	return &sequencer{next: 1, held: map[uint32]*ua.NotificationMessage{}}
}

// nextSeq is the sequence number after s (they wrap to 1, never 0).
func nextSeq(s uint32) uint32 {
	if s++; s == 0 {
		s = 1
	}
	return s
}

// before says a comes before b in sequence-number (serial) order.
func before(a, b uint32) bool { return int32(a-b) < 0 }

// add takes a message with data and calls apply for every message now in
// order, oldest first; a message older than one already applied is
// applied with late = true. It returns whether m was held.
func (q *sequencer) add(m *ua.NotificationMessage, now time.Time, apply func(m *ua.NotificationMessage, late bool)) (held bool) {
	seq := m.SequenceNumber
	switch {
	case seq == q.next:
		apply(m, false)
		q.next = nextSeq(seq)
		q.drain(now, apply)
		return false
	case before(seq, q.next):
		apply(m, true)
		return false
	}
	if len(q.held) == 0 {
		q.since = now
	}
	q.held[seq] = m
	q.expire(now, apply)
	return true
}

// expire gives up on the missing message when the held ones waited
// gapWait: it skips to the oldest held message.
func (q *sequencer) expire(now time.Time, apply func(m *ua.NotificationMessage, late bool)) {
	if len(q.held) == 0 || now.Sub(q.since) < gapWait {
		return
	}
	first := true
	for s := range q.held {
		if first || before(s, q.next) {
			q.next, first = s, false
		}
	}
	q.drain(now, apply)
}

// drain applies the held messages that are now in order.
func (q *sequencer) drain(now time.Time, apply func(m *ua.NotificationMessage, late bool)) {
	for {
		m, ok := q.held[q.next]
		if !ok {
			break
		}
		delete(q.held, q.next)
		apply(m, false)
		q.next = nextSeq(q.next)
	}
	if len(q.held) > 0 {
		q.since = now // what is left waits for its own gap
	}
}
