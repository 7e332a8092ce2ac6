package transfer

// Secret holds a credential. It prints as **redacted** in every format
// verb, JSON and logs, so it can sit in option structs that get logged.
type Secret string

const redacted = "**redacted**"

// String returns a fixed placeholder, never the secret.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString keeps %#v from printing the secret.
func (s Secret) GoString() string { return s.String() }

// MarshalText keeps encoders from writing the secret.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Reveal returns the secret itself, for the one place that must use it.
func (s Secret) Reveal() string { return string(s) }
