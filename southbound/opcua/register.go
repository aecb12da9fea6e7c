package opcua

import "github.com/edged-gw/edged/southbound"

func init() {
	southbound.Register("opcua", func() southbound.Driver { return New() })
	southbound.RegisterCommand(browseCommand)
}
