package mapping

import "github.com/edged-gw/edged/mapping/topic"

// DefaultTopicTemplate is the topic of a tag's value unless configured
// otherwise.
const DefaultTopicTemplate = topic.Default

// Placeholders lists what a topic template may contain, for error messages
// and docs.
const Placeholders = topic.Placeholders

// Template is a parsed MQTT topic template (package topic, which the config
// loader shares).
type Template = topic.Template

// ParseTemplate parses a topic template: see topic.Parse.
func ParseTemplate(s string) (*Template, error) { return topic.Parse(s) }

// ErrTopicValue is wrapped by CheckTopicValue errors.
var ErrTopicValue = topic.ErrValue

// CheckTopicValue checks a value meant for a placeholder: see
// topic.CheckValue.
func CheckTopicValue(v string) error { return topic.CheckValue(v) }
