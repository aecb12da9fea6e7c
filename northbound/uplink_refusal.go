package northbound

import (
	"fmt"
	"time"
)

// A broker may refuse a QoS 1 message in its PUBACK (MQTT 5 reason code
// 0x80 or above: AWS IoT, EMQX and mosquitto do for ACL denials and
// quotas). A refused message is never counted as delivered. Where the
// reason may pass (quota, an unspecified error) the uplink holds back all
// sending for a backoff and sends it again; where it never can (not
// authorized, bad topic or payload) it is dropped from the buffer and
// counted as lost, by reason.

// refusalReason names a PUBACK reason code for metrics and logs (a fixed,
// small set) and says how often a message refused with it is tried in all:
// 0 never again (lost at once), -1 without limit.
func refusalReason(code byte) (label string, tries int) {
	switch code {
	case 0x97:
		return "quota_exceeded", -1 // back-pressure: keep trying; the buffer's caps bound it
	case 0x80:
		return "unspecified_error", maxRefusedTries
	case 0x83:
		return "implementation_specific_error", maxRefusedTries
	case 0x91:
		return "packet_identifier_in_use", maxRefusedTries
	case 0x87:
		return "not_authorized", 0
	case 0x90:
		return "topic_name_invalid", 0
	case 0x99:
		return "payload_format_invalid", 0
	case reasonPacketTooLarge:
		return "packet_too_large", 0
	}
	return "other", maxRefusedTries
}

// reasonPacketTooLarge (0x95) is also what the uplink counts for a message
// larger than the broker's Maximum Packet Size, which is never sent.
const reasonPacketTooLarge = 0x95

// RefusalReasons are the reason labels refusalReason uses.
var RefusalReasons = []string{"quota_exceeded", "unspecified_error", "implementation_specific_error",
	"packet_identifier_in_use", "not_authorized", "topic_name_invalid", "payload_format_invalid", "packet_too_large", "other"}

// maxRefusedTries is how often a message refused for a reason that may
// pass is sent in all before it is counted as lost.
const maxRefusedTries = 5

// maxTracked bounds the refused messages whose tries are counted.
const maxTracked = 1 << 16

// refusalState is the uplink's record of refusals; guarded by Uplink.mu.
type refusalState struct {
	bo          backoff
	lastRefusal time.Time
	coolUntil   time.Time
	retry       []uint64       // refused messages to send again
	tries       map[uint64]int // sends refused so far, of messages to retry
	refused     map[string]uint64
	lost        map[string]uint64
	logged      map[string]refusalLog
	wake        chan struct{} // a refusal came: the session looks again
}

type refusalLog struct {
	at         time.Time
	suppressed uint64 // refusals since the last line
}

func (r *refusalState) init(lo, hi time.Duration) {
	r.bo = newBackoff(lo, hi)
	r.tries = map[uint64]int{}
	r.refused, r.lost, r.logged = map[string]uint64{}, map[string]uint64{}, map[string]refusalLog{}
	r.wake = make(chan struct{}, 1)
}

// newSession forgets what was to be sent again: the new session replays
// every unacknowledged message anyway.
func (r *refusalState) newSession() {
	r.retry = r.retry[:0]
	r.coolUntil = time.Time{}
}

// verdict is what to do with one refused message.
type verdict struct {
	label      string
	lost       bool
	log        bool   // a log line is due (rate-limited per reason)
	suppressed uint64 // refusals of this reason since the last line
	retryIn    time.Duration
}

func (r *refusalState) refuse(now time.Time, seq uint64, code byte) verdict {
	label, limit := refusalReason(code)
	v := verdict{label: label}
	r.refused[label]++
	if limit != 0 {
		if len(r.tries) >= maxTracked {
			clear(r.tries)
		}
		r.tries[seq]++
		if limit < 0 || r.tries[seq] < limit {
			if now.Sub(r.lastRefusal) > r.bo.max {
				r.bo.reset() // a new spell of refusals
			}
			r.lastRefusal = now
			v.retryIn = r.bo.next()
			if until := now.Add(v.retryIn); until.After(r.coolUntil) {
				r.coolUntil = until
			}
			r.retry = append(r.retry, seq)
			select {
			case r.wake <- struct{}{}:
			default:
			}
		} else {
			v.lost = true
		}
	} else {
		v.lost = true
	}
	if v.lost {
		delete(r.tries, seq)
		r.lost[label]++
	}
	l := r.logged[label]
	if l.at.IsZero() || now.Sub(l.at) >= logEvery {
		v.log, v.suppressed = true, l.suppressed
		l = refusalLog{at: now}
	} else {
		l.suppressed++
	}
	r.logged[label] = l
	return v
}

// passed forgets the refusals of a message the broker has now taken.
func (r *refusalState) passed(seq uint64) {
	if len(r.tries) > 0 {
		delete(r.tries, seq)
	}
}

// takeRetries returns how long sending is still held back after a
// refusal, or else the refused messages to send again now.
func (u *Uplink) takeRetries(now time.Time) (time.Duration, []uint64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	r := &u.refusals
	if len(r.retry) == 0 {
		return 0, nil
	}
	if d := r.coolUntil.Sub(now); d > 0 {
		return d, nil
	}
	seqs := append([]uint64(nil), r.retry...)
	r.retry = r.retry[:0]
	return 0, seqs
}

// logRefusal writes the (rate-limited) line about a refusal, with the
// topic of the refused message.
func (u *Uplink) logRefusal(seq uint64, code byte, v verdict) {
	topic := ""
	if es, _, err := u.o.newReader().Read(seq, seq+1, 1); err == nil && len(es) == 1 {
		topic = string(es[0].Topic)
	}
	args := []any{"reason", v.label, "code", fmt.Sprintf("0x%02x", code), "topic", topic, "more_since_last_line", v.suppressed}
	if v.lost {
		u.log.Warn("cloud broker refused a message; dropped and counted as lost", args...)
		return
	}
	u.log.Warn("cloud broker refused a message; sending it again after a pause", append(args, "retry_in", v.retryIn.Round(time.Millisecond))...)
}
