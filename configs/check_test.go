package configs

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// TestChecksReportWithOtherErrors: the checks given to Load run in the
// same Load as the other problems (a device that did not load is left
// out of what they see), and what they report is located: a key from the
// root of the main file, a device's key (in its table or, with InMap, its
// map), a warning.
func TestChecksReportWithOtherErrors(t *testing.T) {
	files := memFS{
		testMain: lines(
			`[gateway]`,          // 1
			`id = "g"`,           // 2
			`topic_prefix = "p"`, // 3
			``,                   // 4
			`[[device]]`,         // 5
			`name = "a"`,         // 6
			`driver = "fake"`,    // 7
			`retries = 20`,       // 8: Init refuses it
			``,                   // 9
			`[[device]]`,         // 10
			`name = "b"`,         // 11
			`driver = "fake"`,    // 12
			`map = "m"`,          // 13
			`host = "h"`,         // 14
			`  [[device.tag]]`,   // 15
			`  name = "t"`,       // 16
		),
		testMaps + "m.toml": lines(`[[tag]]`, `name = "mt"`, `address = 1`),
	}
	var seen []string
	check := func(cfg *Config, r *Report) {
		for _, d := range cfg.Devices {
			seen = append(seen, d.Name)
		}
		r.Errorf("gateway.topic_prefix", "prefix %q checked", cfg.Gateway.TopicPrefix)
		r.Add(errors.Join(
			&DeviceError{Device: "b", Err: Errorf("host", "host checked")},
			&DeviceError{Device: "b", Err: &Error{Key: "tag[0].address", Msg: "map tag checked", InMap: true}},
		))
		r.Device("b", fmt.Errorf("no key"))
		r.Warnings().Device("b", Errorf("tag[0].name", "a warning"))
		r.Add(nil)
	}
	l := &loader{env: func(string) (string, bool) { return "", false }, readFile: files.readFile,
		listMaps: files.listMaps, drivers: fakeDrivers{}, checks: []Check{check}}
	_, err := l.load(testMain, testDir)
	if strings.Join(seen, ",") != "b" {
		t.Errorf("checks saw devices %v, want only b (a did not load)", seen)
	}
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("Load = %v", err)
	}
	want := []string{
		testMain + `:3: gateway.topic_prefix: prefix "p" checked`,
		testMain + `:8: device[0].retries: device "a": 20 retries is too many; at most 10`,
		testMain + `:10: device[1]: device "b": no key`,
		testMain + `:14: device[1].host: device "b": host checked`,
		testMaps + `m.toml:3: tag[0].address: device "b": map tag checked`,
	}
	var got []string
	for _, e := range errs {
		got = append(got, e.Error())
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestCheckWarnings: a check's warnings land in Config.Warnings, located,
// and do not stop the config from loading.
func TestCheckWarnings(t *testing.T) {
	files := memFS{testMain: lines(`[gateway]`, `id = "g"`, `[[device]]`, `name = "b"`, `driver = "fake"`, `  [[device.tag]]`, `  name = "t"`)}
	check := func(cfg *Config, r *Report) { r.Warnings().Device("b", Errorf("tag[0].name", "a warning")) }
	l := &loader{env: func(string) (string, bool) { return "", false }, readFile: files.readFile,
		listMaps: files.listMaps, drivers: fakeDrivers{}, checks: []Check{check}}
	cfg, err := l.load(testMain, testDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Warnings) != 1 || cfg.Warnings[0].Error() != testMain+`:7: device[0].tag[0].name: device "b": a warning` {
		t.Errorf("warnings: %v", cfg.Warnings)
	}
}
