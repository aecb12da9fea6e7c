package door

import (
	"sync"
	"time"
)

// The rate limit of network sources (local and cloud MQTT, Sparkplug, the
// console): each source and each tag has a token bucket of rateBurst
// attempts, refilled at rateRefill per second. Every attempt that passes
// the switches takes a token from both, refused or not, so a flood of bad
// commands is cut off before it costs device time or audit lines grow
// without end. A refusal is too_soon (the documented list stays as it is).
const (
	rateBurst   = 10
	rateRefill  = 5.0
	maxBuckets  = 4096
	bucketKinds = 2
)

type bucket struct {
	tokens float64
	at     time.Time
}

// rateLimits holds the buckets; its zero value is ready.
type rateLimits struct {
	mu      sync.Mutex
	buckets [bucketKinds]map[string]*bucket
}

// take takes one token from the source's bucket and one from the tag's; it
// reports false (and takes none) when either is empty.
func (r *rateLimits) take(src Source, device, tag string, now time.Time) bool {
	keys := [bucketKinds]string{string(src.Kind) + "\x00" + src.Name + "\x00" + src.User, device + "\x00" + tag}
	r.mu.Lock()
	defer r.mu.Unlock()
	var bs [bucketKinds]*bucket
	for i, k := range keys {
		if r.buckets[i] == nil {
			r.buckets[i] = map[string]*bucket{}
		}
		m := r.buckets[i]
		b := m[k]
		if b == nil {
			if len(m) >= maxBuckets {
				prune(m, now)
			}
			b = &bucket{tokens: rateBurst, at: now}
			m[k] = b
		}
		if dt := now.Sub(b.at).Seconds(); dt > 0 {
			b.tokens = min(rateBurst, b.tokens+dt*rateRefill)
		}
		b.at = now
		bs[i] = b
	}
	for _, b := range bs {
		if b.tokens < 1 {
			return false
		}
	}
	for _, b := range bs {
		b.tokens--
	}
	return true
}

// prune forgets buckets that have refilled (they hold nothing a new one
// would not), or all when none has.
func prune(m map[string]*bucket, now time.Time) {
	for k, b := range m {
		if b.tokens+now.Sub(b.at).Seconds()*rateRefill >= rateBurst {
			delete(m, k)
		}
	}
	if len(m) >= maxBuckets {
		clear(m)
	}
}
