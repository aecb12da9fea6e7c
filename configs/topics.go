package configs

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
	"github.com/edged-gw/edged/mapping/topic"
)

// Payload formats ([gateway] format, and an [[upstream]]'s).
const (
	// FormatJSON is edged's JSON: per tag {"v","ts","q",…}, per device
	// {"ts","values":{…}}.
	FormatJSON = "json"
	// FormatValue is the bare value as text on each tag's topic (24.7,
	// true, the text of a string), for the simplest consumers. A sample of
	// bad quality is not published (the last good value stays retained,
	// the device's _status topic says why); there are no per-device
	// messages in this format.
	FormatValue = "value"
)

// upstreamFormats are the formats an [[upstream]] may have, for checking
// and for error messages.
var upstreamFormats = []string{FormatJSON, FormatValue, FormatSparkplug}

// Publish modes ([gateway] publish).
const (
	PublishTags   = "tags"
	PublishDevice = "device"
	PublishBoth   = "both"
)

// checkPayload checks and defaults [gateway] publish and format, and
// parses its topic templates (each error at its key's line). Call after
// checkGateway, before the upstreams (their format depends on it).
func (l *loader) checkPayload(src *source, cfg *Config) {
	g := &cfg.Gateway
	key := func(k string) keyPath { return keyPath{{key: "gateway"}, {key: k}} }
	ok := func(k string) bool { return !l.failed[key(k).String()] }

	pubOK := true
	switch g.Publish {
	case "":
		g.Publish = PublishTags
	case PublishTags, PublishDevice, PublishBoth:
	default:
		pubOK = false
		if ok("publish") {
			l.at(src, key("publish"), `%q is not a publish mode; use "tags" (default: one message per tag on its topic), "device" (one message per device per poll, on device_topic_template) or "both"`, g.Publish)
		}
	}
	switch g.Format {
	case "":
		g.Format = FormatJSON
	case FormatJSON:
	case FormatValue:
		if pubOK && g.Publish != PublishTags {
			l.at(src, key("format"), `format = "value" publishes each tag's bare value on the tag's own topic; a per-device message (publish = %q) has no bare-value form: set publish = "tags", or keep format = "json"`, g.Publish)
		}
	default:
		if ok("format") {
			l.at(src, key("format"), `%q is not a payload format; use "json" (default: {"v","ts","q"} per tag) or "value" (the bare value as text, for the simplest consumers)`, g.Format)
		}
	}
	if ok("topic_template") {
		if t, err := topic.Parse(g.TopicTemplate); err != nil {
			l.at(src, key("topic_template"), "%v", err)
		} else {
			l.tmpl = t
		}
	}
	if g.DeviceTopicTemplate == "" {
		g.DeviceTopicTemplate = DefaultDeviceTopicTemplate
	}
	if ok("device_topic_template") {
		if t, err := topic.Parse(g.DeviceTopicTemplate); err != nil {
			l.at(src, key("device_topic_template"), "%v", err)
		} else {
			l.devTmpl = t
		}
	}
}

// DefaultDeviceTopicTemplate is where per-device messages go.
const DefaultDeviceTopicTemplate = "{prefix}/{gateway}/{device}"

// checkUpstreamFormat checks and defaults an [[upstream]]'s format. The
// uplink bridges what edged publishes locally, so it can turn JSON into
// bare values but not the other way round.
func (l *loader) checkUpstreamFormat(src *source, cfg *Config, p keyPath, u *Upstream) {
	local := cfg.Gateway.Format
	if u.Format == "" {
		u.Format = local
		return
	}
	if l.failed[p.String()] {
		return
	}
	switch {
	case !slices.Contains(upstreamFormats, u.Format):
		l.at(src, p, "%q is not an upstream format; use %s (default: the [gateway] format, %q)", u.Format, quotedList(upstreamFormats), local)
	case u.Format == FormatJSON && local == FormatValue:
		l.at(src, p, `format = "json" needs the JSON messages, but [gateway] format = "value" publishes bare values (no ts, no quality to rebuild them from): set format = "value" here, or [gateway] format = "json" (an upstream with format = "value" still gets bare values)`)
	case u.Format == FormatValue && cfg.Gateway.Publish == PublishDevice:
		l.at(src, p, `format = "value" sends each tag's bare value, but [gateway] publish = "device" publishes no per-tag messages: set publish = "tags" or "both" (per-device messages are not sent to a value upstream)`)
	}
}

func quotedList(list []string) string {
	q := make([]string, len(list))
	for i, s := range list {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q, ", ")
}

// topicTag is what the topic checks read of a tag, whatever its driver:
// every driver's tags are [[device.tag]] / [[tag]] tables embedding
// mapping.Spec, whose name, topic and meta keys these are.
type topicTag struct {
	Name  string            `toml:"name"`
	Topic string            `toml:"topic"`
	Meta  map[string]string `toml:"meta"`
}

type topicTags struct {
	Tag []topicTag `toml:"tag"`
}

// topicDevice is a device with a known driver, kept for the topic checks;
// clean when its table (and map) decoded and passed Init.
type topicDevice struct {
	d     *Device
	base  keyPath
	prim  toml.Primitive
	mf    *mapFile
	clean bool
}

// tagAt is one tag and where it is written.
type tagAt struct {
	topicTag
	file  string
	idx   *lineIndex
	key   string // tag[j] (map) or device[i].tag[j] (main file)
	inMap bool
}

func (t *tagAt) line(sub string) int {
	k := t.key
	if sub != "" {
		k += "." + sub
	}
	return t.idx.lineOfKey(k)
}

func (t *tagAt) keyOf(sub string) string {
	if sub == "" {
		return t.key
	}
	return t.key + "." + sub
}

// topicOwner is what a rendered topic carries, for collision errors.
type topicOwner struct {
	what  string
	where string // file:line
}

func where(file string, line int) string {
	if line <= 0 {
		return file
	}
	return file + ":" + strconv.Itoa(line)
}

// mapTags reads the tags of a map file once.
func (mf *mapFile) topicTags() []topicTag {
	if mf.tagsRead {
		return mf.tags
	}
	mf.tagsRead = true
	var tt topicTags
	if _, err := toml.Decode(string(mf.text), &tt); err == nil {
		mf.tags = tt.Tag
	}
	return mf.tags
}

// checkTopics renders every tag's topic, every device's status topic and
// (with publish = "device" or "both") per-device topic, as the gateway
// will, and reports: tag topics that do not parse, meta keys and values
// that cannot be used, {meta.KEY} placeholders that a device or tag does
// not set, and two things rendering to the same topic (at the second,
// naming the first's file and line). The topics of devices that had other
// errors are not claimed.
func (l *loader) checkTopics(src *source, cfg *Config) {
	g := &cfg.Gateway
	owners := map[string]topicOwner{}
	clean := true
	claim := func(t string, own topicOwner, file string, line int, key string, tag bool) {
		if !clean {
			return // its other errors first: a tag without a name renders wrong
		}
		if prev, dup := owners[t]; dup {
			l.add(file, line, key, "topic %q of %s is already the topic of %s (%s): every tag, device message and status needs a topic of its own; give one a topic of its own or use {tag}, {device} or a {meta.KEY} that tells them apart", t, own.what, prev.what, prev.where)
			return
		}
		owners[t] = own
		if tag {
			l.tagTopics = append(l.tagTopics, t)
		}
	}
	statusTopic := g.TopicPrefix + "/" + g.ID + "/status"
	owners[statusTopic] = topicOwner{what: "the gateway status", where: "built in: {prefix}/{gateway}/status"}

	own := map[string]*topic.Template{} // a tag's own topic → parsed
	for _, td := range l.topicDevs {
		d := td.d
		clean = td.clean
		devLine := src.idx.lineOf(td.base)
		devKey := td.base.String()
		l.checkMeta(src.file, src.idx, devKey, d.Meta)

		stat := g.TopicPrefix + "/" + g.ID + "/" + d.Name + "/_status"
		claim(stat, topicOwner{what: fmt.Sprintf("the status of device %q", d.Name), where: where(src.file, devLine)}, src.file, devLine, devKey, false)
		if l.devTmpl != nil && g.Publish != PublishTags {
			f := topic.Fields{Prefix: g.TopicPrefix, Gateway: g.ID, Device: d.Name, DeviceMeta: d.Meta}
			if t, err := l.devTmpl.Expand(&f); err != nil {
				k := missingKey(err)
				l.add(src.file, src.idx.lineOfKey(devKey+".meta"), devKey+".meta", "device %q: device_topic_template %q%s uses {meta.%s}, but the device's meta has no key %q: add it, e.g. meta = { %s = \"…\" }",
					d.Name, l.devTmpl, atLine(src, "gateway.device_topic_template"), k, k, k)
			} else {
				claim(t, topicOwner{what: fmt.Sprintf("the per-device messages of device %q", d.Name), where: where(src.file, devLine)}, src.file, devLine, devKey, false)
			}
		}
		if g.Publish == PublishDevice {
			continue // no per-tag topics
		}

		var tags []tagAt
		if td.mf != nil && td.mf.idx != nil {
			for j, t := range td.mf.topicTags() {
				tags = append(tags, tagAt{topicTag: t, file: td.mf.path, idx: td.mf.idx, key: fmt.Sprintf("tag[%d]", j), inMap: true})
			}
		}
		var inline topicTags
		if err := src.md.PrimitiveDecode(td.prim, &inline); err == nil {
			for j, t := range inline.Tag {
				tags = append(tags, tagAt{topicTag: t, file: src.file, idx: src.idx, key: fmt.Sprintf("%s.tag[%d]", devKey, j)})
			}
		}

		// {meta.KEY} of the shared template that no tag of this device can
		// fill: one error at the device, not one per tag.
		shared := map[string]int{} // key → tags using the shared template that miss it
		sharedUsers := 0
		type miss struct {
			t   *tagAt
			key string
		}
		var misses []miss
		for i := range tags {
			t := &tags[i]
			l.checkMeta(t.file, t.idx, t.key, t.Meta)
			tmpl := l.tmpl
			if t.Topic != "" {
				tmpl = own[t.Topic]
				if tmpl == nil {
					p, err := topic.Parse(t.Topic)
					if err != nil {
						l.add(t.file, t.line("topic"), t.keyOf("topic"), "tag %q: %v", t.Name, err)
						continue
					}
					own[t.Topic], tmpl = p, p
				}
			} else {
				sharedUsers++
			}
			if tmpl == nil {
				continue // the template's own error is reported
			}
			f := topic.Fields{Prefix: g.TopicPrefix, Gateway: g.ID, Device: d.Name, Tag: t.Name, TagMeta: t.Meta, DeviceMeta: d.Meta}
			missing := false
			for _, k := range tmpl.MetaKeys() {
				v, ok := f.Meta(k)
				if !ok {
					missing = true
					if t.Topic == "" {
						shared[k]++
					}
					misses = append(misses, miss{t, k})
					continue
				}
				if err := topic.CheckValue(v); err != nil {
					if _, mine := t.Meta[k]; mine {
						l.add(t.file, t.line("meta."+k), t.keyOf("meta."+k), "tag %q: meta %s = %q is used in its topic, and / + # and NUL are not allowed in a topic level", t.Name, k, v)
					} else {
						l.add(src.file, src.idx.lineOfKey(devKey+".meta."+k), devKey+".meta."+k, "device %q: meta %s = %q is used in its tags' topics, and / + # and NUL are not allowed in a topic level", d.Name, k, v)
					}
					missing = true
				}
			}
			if missing {
				continue
			}
			rendered, _ := tmpl.Expand(&f)
			what := fmt.Sprintf("tag %q of device %q", t.Name, d.Name)
			if t.inMap {
				o := topicOwner{what: what, where: fmt.Sprintf("%s, from map %s", where(src.file, devLine), where(t.file, t.line("")))}
				claim(rendered, o, src.file, devLine, devKey, true)
			} else {
				line := t.line("topic")
				if t.Topic == "" {
					line = t.line("")
				}
				claim(rendered, topicOwner{what: what, where: where(t.file, t.line(""))}, t.file, line, t.keyOf(""), true)
			}
		}
		for _, m := range misses {
			if m.t.Topic == "" && shared[m.key] == sharedUsers && sharedUsers > 1 {
				continue // reported once for the device below
			}
			by := "topic_template " + strconv.Quote(l.tmpl.String())
			if m.t.Topic != "" {
				by = "its topic " + strconv.Quote(m.t.Topic)
			}
			line := m.t.line("meta")
			if m.t.Meta == nil && m.t.Topic != "" {
				line = m.t.line("topic")
			}
			l.add(m.t.file, line, m.t.keyOf("meta"), "tag %q of device %q: %s uses {meta.%s}, but neither the tag's meta nor the device's (%s) has key %q: add %s = \"…\" to one of them",
				m.t.Name, d.Name, by, m.key, where(src.file, devLine), m.key, m.key)
		}
		if l.tmpl == nil {
			continue
		}
		for _, k := range l.tmpl.MetaKeys() {
			if shared[k] == sharedUsers && sharedUsers > 1 {
				l.add(src.file, src.idx.lineOfKey(devKey+".meta"), devKey+".meta", "device %q: topic_template %q%s uses {meta.%s}, but neither the device nor any of its %d tags sets meta key %q: add it to the device, e.g. meta = { %s = \"…\" }",
					d.Name, l.tmpl, atLine(src, "gateway.topic_template"), k, sharedUsers, k, k)
			}
		}
	}
}

// checkMeta checks the keys of one meta table (at key base.meta).
func (l *loader) checkMeta(file string, idx *lineIndex, base string, meta map[string]string) {
	keys := make([]string, 0, len(meta))
	for k := range meta {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !topic.ValidMetaKey(k) {
			p := base + ".meta." + quoteKey(k)
			l.add(file, idx.lineOfKey(p), p, "meta key %q cannot be used as {meta.%s} in a topic template: use letters, digits, '-' and '_'", k, k)
		}
	}
}

// atLine is " (line N)" for a key written in src, else "".
func atLine(src *source, key string) string {
	if n := src.idx.line(key); n > 0 {
		return fmt.Sprintf(" (line %d)", n)
	}
	return ""
}

func missingKey(err error) string {
	if me, ok := err.(*topic.MissingMetaError); ok {
		return me.Key
	}
	return ""
}

// warnUnbridged warns about an upstream whose topics match none of the
// tags' topics: with a namespace of its own (acme/…) and the default
// topics ({topic_prefix}/#), nothing but statuses would go up.
func (l *loader) warnUnbridged(src *source, cfg *Config) {
	if len(l.tagTopics) == 0 {
		return
	}
	for i, u := range cfg.Upstreams {
		matched := false
		for _, t := range l.tagTopics {
			for _, f := range u.Topics {
				if matchFilter(f, t) {
					matched = true
					break
				}
			}
			if matched {
				break
			}
		}
		if !matched {
			p := keyPath{{key: "upstream", idx: []int{i}}, {key: "topics"}}
			cfg.Warnings = append(cfg.Warnings, &Error{File: src.file, Line: src.idx.lineOf(p), Key: p.String(),
				Msg: fmt.Sprintf("upstream %q: its topics %q match none of the %d tag topics (e.g. %q): only statuses go up; add a filter of your namespace, e.g. topics = [%q]",
					u.Name, u.Topics, len(l.tagTopics), l.tagTopics[0], firstLevel(l.tagTopics[0])+"/#")})
		}
	}
}

func firstLevel(t string) string {
	first, _, _ := strings.Cut(t, "/")
	return first
}

// matchFilter reports whether the MQTT topic filter f matches topic t.
func matchFilter(f, t string) bool {
	fl, tl := strings.Split(f, "/"), strings.Split(t, "/")
	for i, x := range fl {
		if x == "#" {
			return true
		}
		if i >= len(tl) || (x != "+" && x != tl[i]) {
			return false
		}
	}
	return len(fl) == len(tl)
}
