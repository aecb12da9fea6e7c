// Package all lists the drivers edged ships: importing it registers them.
// Adding a protocol is one folder under southbound/ and one line here.
package all

import (
	// One line per driver.
	_ "github.com/edged-gw/edged/southbound/modbus"
	_ "github.com/edged-gw/edged/southbound/opcua"
)
