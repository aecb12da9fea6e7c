package app

// The tests run configs with every shipped driver, as cmd/edged does.
import _ "github.com/edged-gw/edged/southbound/all"
