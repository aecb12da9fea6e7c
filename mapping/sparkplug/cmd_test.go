package sparkplug

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/edged-gw/edged/mapping/sparkplug/sproto"
)

func ncmdRebirth(t testing.TB) []byte {
	t.Helper()
	b, err := proto.Marshal(&sproto.Payload{Timestamp: proto.Uint64(1), Metrics: []*sproto.Payload_Metric{{
		Name: proto.String(MetricRebirth), Datatype: proto.Uint32(uint32(TypeBoolean)),
		Value: &sproto.Payload_Metric_BooleanValue{BooleanValue: true},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}
