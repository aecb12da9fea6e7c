package modbus

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/edged-gw/edged/mapping"
	"github.com/edged-gw/edged/southbound"
	"github.com/edged-gw/edged/southbound/serial"
)

var probeCommand = southbound.Command{Name: "probe", Summary: "--tcp HOST:PORT | --rtu PORT [--baud N] --unit U --addr A [--count N] [--area holding|input]   read raw registers and show them as every type and word order", Run: cmdProbe}

func cmdProbe(_ southbound.CommandEnv, args []string, stdout, stderr io.Writer) int {
	fs := southbound.NewFlags("probe", stderr)
	tcp := fs.String("tcp", "", "Modbus TCP device, host:port")
	rtu := fs.String("rtu", "", "serial port of an RTU bus, e.g. /dev/ttyUSB0")
	baud := fs.Int("baud", serial.DefaultBaud, "RTU baud rate")
	parity := fs.String("parity", serial.DefaultParity, "RTU parity: none, even, odd")
	stop := fs.Int("stop-bits", serial.DefaultStopBits, "RTU stop bits: 1 or 2")
	unit := fs.Int("unit", 1, "unit (slave) id")
	addr := fs.Int("addr", 0, "first register, 0-based as on the wire (manual says 40101? use 100)")
	count := fs.Int("count", 4, "registers to read, 1..125")
	areaName := fs.String("area", "holding", "holding or input")
	timeout := fs.Duration("timeout", time.Second, "wait for the answer")
	if err := fs.Parse(args); err != nil {
		return southbound.ExitUsage
	}
	var area Area
	if err := area.UnmarshalText([]byte(*areaName)); err != nil || area.Bits() {
		fmt.Fprintf(stderr, "edged probe: --area %q: allowed are holding and input\n", *areaName)
		return southbound.ExitUsage
	}
	if (*tcp == "") == (*rtu == "") {
		fmt.Fprintln(stderr, "edged probe: give exactly one of --tcp HOST:PORT and --rtu PORT")
		return southbound.ExitUsage
	}
	tg := ProbeTarget{TCP: *tcp, RTU: *rtu, UnitID: *unit, Timeout: *timeout,
		Mode: serial.Mode{Baud: *baud, Parity: *parity, StopBits: *stop}}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout+5*time.Second)
	defer cancel()
	words, err := ReadRegisters(ctx, tg, area, *addr, *count)
	if err != nil {
		fmt.Fprintf(stderr, "edged probe: %v\n", err)
		return southbound.ExitFailure
	}
	printProbe(stdout, area, *addr, words)
	return southbound.ExitOK
}

// printProbe shows the registers with their address in every notation,
// then the value at the first register decoded as every type in every
// word order: the row that looks right names the tag's type and order.
func printProbe(w io.Writer, area Area, addr int, words []uint16) {
	base, digit := 40001, "4"
	if area == InputRegister {
		base, digit = 30001, "3"
	}
	fmt.Fprintf(w, "%s registers %d..%d (0-based, as on the wire and in edged's address = …)\n", area, addr, addr+len(words)-1)
	fmt.Fprintf(w, "hint: register %d in 1-based %sxxxx notation = address %d; in 6-digit notation %d\n\n",
		base+addr, digit, addr, base*10-9+addr)
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "address\t1-based\thex\tuint16\tint16\tchars\t")
	for i, v := range words {
		a := addr + i
		hi, lo := byte(v>>8), byte(v)
		fmt.Fprintf(tw, "%d\t%d\t%04X\t%d\t%d\t%s\t\n", a, base+a, v, v, int16(v), printable(hi)+printable(lo))
	}
	tw.Flush()
	raw := make([]byte, 0, 2*len(words))
	for _, v := range words {
		raw = binary.BigEndian.AppendUint16(raw, v)
	}
	fmt.Fprintf(w, "\nvalue at address %d decoded as (type = …, order = …):\n", addr)
	tw = tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "type\tABCD\tCDAB\tBADC\tDCBA")
	for _, typ := range []mapping.Type{mapping.TypeInt16, mapping.TypeUint16, mapping.TypeInt32, mapping.TypeUint32,
		mapping.TypeFloat32, mapping.TypeInt64, mapping.TypeUint64, mapping.TypeFloat64} {
		if typ.Words() > len(words) {
			continue
		}
		cells := []string{typ.String()}
		for _, o := range []mapping.Order{mapping.OrderABCD, mapping.OrderCDAB, mapping.OrderBADC, mapping.OrderDCBA} {
			spec := mapping.Spec{Name: "probe", Type: typ, Order: o}
			if err := spec.Init(); err != nil {
				cells = append(cells, "?")
				continue
			}
			v, err := spec.Decode(raw)
			if err != nil {
				cells = append(cells, "?")
				continue
			}
			cells = append(cells, mapping.FormatValue(v))
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	tw.Flush()
	fmt.Fprintln(w, "\nABCD is the Modbus standard (big-endian); CDAB word-swapped; BADC byte-swapped; DCBA little-endian.")
}

func printable(b byte) string {
	if b >= 0x20 && b < 0x7F {
		return string(rune(b))
	}
	return "."
}
