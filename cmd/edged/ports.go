package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"

	"go.bug.st/serial/enumerator"
)

func init() {
	register(command{"ports", "          list serial ports with USB vendor/product/serial and their stable /dev/serial/by-id links", cmdPorts})
}

// byIDDir holds udev's stable names of serial ports; tests change it.
var byIDDir = "/dev/serial/by-id"

func cmdPorts(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("ports", stderr)
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	ports, err := enumerator.GetDetailedPortsList()
	if err != nil {
		fmt.Fprintf(stderr, "edged ports: %v\n", err)
		return exitFailure
	}
	links := byIDLinks()
	tw := tabwriter.NewWriter(stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "PORT\tUSB VID:PID\tSERIAL\tPRODUCT\tSTABLE PATH (use as port = …)")
	for _, p := range ports {
		usb, serialNo, product := "-", "-", "-"
		if p.IsUSB {
			usb = p.VID + ":" + p.PID
			if p.SerialNumber != "" {
				serialNo = p.SerialNumber
			}
			if p.Product != "" {
				product = p.Product
			}
		}
		stable := links[p.Name]
		if stable == "" {
			stable = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", p.Name, usb, serialNo, product, stable)
	}
	tw.Flush()
	if len(ports) == 0 {
		fmt.Fprintln(stdout, "(no serial ports found: is the USB adapter plugged in, and is its driver loaded? see dmesg)")
	}
	return exitOK
}

// byIDLinks maps a device path (/dev/ttyUSB0) to its by-id link.
func byIDLinks() map[string]string {
	out := map[string]string{}
	entries, err := os.ReadDir(byIDDir)
	if err != nil {
		return out
	}
	for _, e := range entries {
		link := filepath.Join(byIDDir, e.Name())
		if target, err := filepath.EvalSymlinks(link); err == nil {
			out[target] = link
		}
	}
	return out
}
