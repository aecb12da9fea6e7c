package main

// The drivers (and their subcommands) edged is built with.
import _ "github.com/edged-gw/edged/southbound/all"
