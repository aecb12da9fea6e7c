package modbus

import "github.com/edged-gw/edged/southbound"

func init() {
	southbound.Register("modbus-tcp", func() southbound.Driver { return NewTCP() })
	southbound.Register("modbus-rtu", func() southbound.Driver { return NewRTU() })
	southbound.Register("modbus-rtu-tcp", func() southbound.Driver { return NewRTUOverTCP() })
	southbound.RegisterCommand(planCommand)
	southbound.RegisterCommand(probeCommand)
}
