package console

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

var funcs = template.FuncMap{
	"time":  fmtTime,
	"dur":   fmtDur,
	"bytes": fmtBytes,
	"poll":  fmtPoll,
	"pct":   func(f float64) string { return strconv.FormatFloat(f*100, 'f', 1, 64) + " %" },
	"url":   pageURL,
	"ratio": func(a, b int64) string {
		if b <= 0 {
			return ""
		}
		return strconv.FormatFloat(float64(a)/float64(b)*100, 'f', 1, 64) + " %"
	},
}

func fmtTime(ms int64) string {
	if ms <= 0 {
		return "–"
	}
	return time.UnixMilli(ms).Format("15:04:05.000")
}

func fmtDur(s float64) string {
	if s <= 0 || math.IsNaN(s) {
		return "0s"
	}
	return time.Duration(s * float64(time.Second)).Round(time.Millisecond * 100).String()
}

func fmtPoll(s float64) string {
	if s < 0 {
		return "–"
	}
	return time.Duration(s * float64(time.Second)).Round(100 * time.Microsecond).String()
}

func fmtNum(f float64) string { return strconv.FormatFloat(f, 'g', 4, 64) }

func fmtBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func urlPathEscape(s string) string { return url.PathEscape(s) }

// page is what every template gets.
type page struct {
	Title   string
	Nav     string
	Scope   string // the device whose tags the event stream carries
	User    string
	Gateway GatewayInfo
	Uptime  string
	Data    any
}

func (c *Console) render(w http.ResponseWriter, r *http.Request, name string, p page) {
	p.User = userOf(r)
	p.Gateway = c.o.Source.Gateway()
	p.Uptime = fmtDur(time.Since(p.Gateway.Started).Seconds())
	var buf bytes.Buffer
	if err := c.pages.ExecuteTemplate(&buf, name, p); err != nil {
		c.log.Error("console page failed", "page", name, "err", err)
		http.Error(w, "page failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write(buf.Bytes())
}

type overviewData struct {
	Devices []Device
	Uplinks []Uplink
	Plots   []Plot
}

func (c *Console) overview(w http.ResponseWriter, r *http.Request) {
	d := overviewData{Devices: c.o.Source.Devices(), Uplinks: c.o.Source.Uplinks()}
	for _, u := range d.Uplinks {
		d.Plots = append(d.Plots, c.rec.plot("backlog:"+u.Name))
	}
	c.render(w, r, "overview.html", page{Title: "Overview", Nav: "overview", Data: d})
}

type tagRow struct {
	Tag
	Info       TagInfo
	LastChange string
}

type deviceData struct {
	Device   Device
	Detail   DeviceDetail
	Tags     []tagRow
	Plot     Plot
	CanWrite bool
	CSRF     string
	Result   *WriteResult
	Wrote    string
}

func (c *Console) deviceData(r *http.Request) (deviceData, bool) {
	name := r.PathValue("name")
	var dd deviceData
	found := false
	for _, d := range c.o.Source.Devices() {
		if d.Name == name {
			dd.Device, found = d, true
		}
	}
	if !found {
		return dd, false
	}
	dd.Detail, _ = c.o.Source.Device(name)
	info := map[string]TagInfo{}
	for _, ti := range dd.Detail.Tags {
		info[ti.Name] = ti
	}
	for _, t := range c.o.Source.Tags(name)[name] {
		dd.Tags = append(dd.Tags, tagRow{Tag: t, Info: info[t.Name], LastChange: fmtTime(c.rec.lastChange(name, t.Name))})
	}
	dd.Plot = c.rec.plot("poll:" + name)
	if c.canWrite(r) {
		dd.CanWrite, dd.CSRF = true, c.csrfToken(userOf(r))
	}
	return dd, true
}

func (c *Console) device(w http.ResponseWriter, r *http.Request) {
	dd, ok := c.deviceData(r)
	if !ok {
		http.NotFound(w, r)
		return
	}
	c.render(w, r, "device.html", page{Title: dd.Device.Name, Nav: "device", Scope: dd.Device.Name, Data: dd})
}

// write is the console's only state-changing request: a logged-in user,
// [console] writes on, and the CSRF token of the page, then the door.
func (c *Console) write(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	if !c.canWrite(r) {
		http.Error(w, "403 writes from the console are off ([console] writes = true and a [[console.user]] login turn them on)", http.StatusForbidden)
		return
	}
	if !c.csrfOK(r) {
		http.Error(w, "403 the form's CSRF token is missing or wrong: reload the page and try again", http.StatusForbidden)
		return
	}
	dd, ok := c.deviceData(r)
	if !ok {
		http.NotFound(w, r)
		return
	}
	tag, value := r.PostFormValue("tag"), r.PostFormValue("value")
	res := c.o.Writer.Write(r.Context(), dd.Device.Name, tag, value, userOf(r))
	c.log.Info("console write", "device", dd.Device.Name, "tag", tag, "user", userOf(r), "ok", res.OK, "reason", res.Reason)
	dd.Result, dd.Wrote = &res, tag
	if !res.OK {
		w.WriteHeader(http.StatusUnprocessableEntity)
	}
	c.render(w, r, "device.html", page{Title: dd.Device.Name, Nav: "device", Scope: dd.Device.Name, Data: dd})
}

type uplinkRow struct {
	Uplink
	History []ConnEvent
	Plot    Plot
}

func (c *Console) uplinks(w http.ResponseWriter, r *http.Request) {
	var rows []uplinkRow
	ups := c.o.Source.Uplinks()
	c.rec.observeUplinks(ups, time.Now()) // the history as of now, not of the last sample
	for _, u := range ups {
		rows = append(rows, uplinkRow{Uplink: u, History: c.rec.connHistory(u.Name), Plot: c.rec.plot("backlog:" + u.Name)})
	}
	c.render(w, r, "uplinks.html", page{Title: "Uplinks", Nav: "uplinks", Data: rows})
}

func (c *Console) config(w http.ResponseWriter, r *http.Request) {
	c.render(w, r, "config.html", page{Title: "Config", Nav: "config", Data: c.o.Source.Config()})
}

// appendJSONObject writes m as one line of JSON (the event stream's data
// line must not break).
func appendJSONObject(buf *bytes.Buffer, m map[string]string) {
	buf.WriteByte('{')
	first := true
	for k, v := range m {
		if !first {
			buf.WriteByte(',')
		}
		first = false
		appendJSONString(buf, k)
		buf.WriteByte(':')
		appendJSONString(buf, v)
	}
	buf.WriteByte('}')
}

func appendJSONString(buf *bytes.Buffer, s string) {
	const hex = "0123456789abcdef"
	buf.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			buf.WriteByte('\\')
			buf.WriteRune(r)
		case r < 0x20 || r == 0x2028 || r == 0x2029:
			buf.WriteString(`\u`)
			buf.WriteByte(hex[r>>12&0xf])
			buf.WriteByte(hex[r>>8&0xf])
			buf.WriteByte(hex[r>>4&0xf])
			buf.WriteByte(hex[r&0xf])
		default:
			buf.WriteRune(r) // invalid UTF-8 becomes U+FFFD
		}
	}
	buf.WriteByte('"')
}

// apiState is the live values of a scope as JSON, for scripts and tests.
func (c *Console) apiState(w http.ResponseWriter, r *http.Request) {
	devs, ups := c.o.Source.Devices(), c.o.Source.Uplinks()
	m := baseValues(c.o.Source.Gateway(), devs, ups, time.Now())
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(m)
}

// events streams live values: the first message has every value of the
// scope, later ones what changed. It holds a subscription only while the
// browser is connected.
func (c *Console) events(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	cl := &client{device: r.URL.Query().Get("device"), wake: make(chan struct{}, 1)}
	c.rec.add(cl)
	defer c.rec.remove(cl)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("X-Accel-Buffering", "no")
	_, _ = fmt.Fprint(w, "retry: 2000\n\n")
	fl.Flush()
	sent := map[string]string{}
	diff := map[string]string{}
	var buf bytes.Buffer
	for {
		select {
		case <-r.Context().Done():
			return
		case <-c.rec.done:
			return
		case <-cl.wake:
		}
		f := c.rec.frame.Load()
		if f == nil {
			continue
		}
		clear(diff)
		collect := func(m map[string]string) {
			for k, v := range m {
				if old, ok := sent[k]; !ok || old != v {
					diff[k], sent[k] = v, v
				}
			}
		}
		collect(f.base)
		if cl.device != "" {
			collect(f.tags[cl.device])
		}
		if len(diff) == 0 {
			continue
		}
		buf.Reset()
		buf.WriteString("data: ")
		appendJSONObject(&buf, diff)
		buf.WriteString("\n\n")
		if _, err := w.Write(buf.Bytes()); err != nil {
			return
		}
		fl.Flush()
	}
}
