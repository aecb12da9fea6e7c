package opcua

import (
	"context"
	"errors"
	"fmt"

	"github.com/gopcua/opcua/ua"

	"github.com/edged-gw/edged/mapping"
	"github.com/edged-gw/edged/southbound"
)

// ErrOffline is returned by Write while there is no session.
var ErrOffline = southbound.ErrOffline

// PrepareWrite implements host.WritePreparer: the host applied the tag's
// write policy (writable, min, max, write_interval); the job sets the
// tag's node through the Write service on the live session. The value is
// sent as the tag's configured type or, without one, as the node's
// current type (read first), with scale and offset undone. A status other
// than Good from the server is returned as *StatusError.
func (d *Device) PrepareWrite(i int, v mapping.Value) (func(context.Context) error, error) {
	return func(ctx context.Context) error { return d.write(ctx, i, v) }, nil
}

func (d *Device) write(ctx context.Context, i int, v mapping.Value) error {
	t := &d.tags[i]
	tag := t.Name
	cn, node, err := d.target(ctx, t, "write")
	if err != nil {
		return err
	}
	typ := typeOf(t.Type)
	if typ == 0 {
		if typ, err = cn.valueType(ctx, node); err != nil {
			return fmt.Errorf("opcua device %q: write %s: learn the node's type (or set type on the tag): %w", d.Name, tag, err)
		}
	}
	variant, err := fromValue(v, &t.Spec, typ)
	if err != nil {
		return fmt.Errorf("opcua device %q: %w: tag %q: %v", d.Name, mapping.ErrWriteRefused, tag, err)
	}
	wctx, cancel := context.WithTimeout(ctx, cn.timeout)
	defer cancel()
	res, err := cn.c.Write(wctx, &ua.WriteRequest{NodesToWrite: []*ua.WriteValue{{
		NodeID:      node,
		AttributeID: ua.AttributeIDValue,
		Value:       &ua.DataValue{EncodingMask: ua.DataValueValue, Value: variant},
	}}})
	d.request(err)
	if err != nil {
		return fmt.Errorf("opcua device %q: write %s: %w", d.Name, tag, err)
	}
	if len(res.Results) != 1 {
		return fmt.Errorf("opcua device %q: write %s: the server answered %d results for 1 node", d.Name, tag, len(res.Results))
	}
	if sc := res.Results[0]; sc != ua.StatusOK {
		return fmt.Errorf("opcua device %q: write %s: %w", d.Name, tag, statusErr(sc))
	}
	return nil
}

// valueType reads a node's value to learn its type.
func (cn *conn) valueType(ctx context.Context, node *ua.NodeID) (ua.TypeID, error) {
	rctx, cancel := context.WithTimeout(ctx, cn.timeout)
	defer cancel()
	res, err := cn.c.Read(rctx, &ua.ReadRequest{NodesToRead: []*ua.ReadValueID{{NodeID: node, AttributeID: ua.AttributeIDValue}}})
	if err != nil {
		return 0, err
	}
	if len(res.Results) != 1 || res.Results[0] == nil {
		return 0, errors.New("no result")
	}
	dv := res.Results[0]
	if quality(dv.Status) == mapping.Bad {
		return 0, statusErr(dv.Status)
	}
	if dv.Value == nil || dv.Value.Type() == 0 {
		return 0, errors.New("the node has no value")
	}
	if dv.Value.ArrayLength() > 0 || dv.Value.ArrayDimensions() != nil {
		return 0, errors.New("writing arrays is not supported")
	}
	return dv.Value.Type(), nil
}
