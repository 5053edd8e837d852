// Package logging is kiln serve's log handler: a slog.Handler whose levels
// and format change while the server runs, through Triton's log settings
// (the /v2/logging endpoint and the LogSettings RPC).
//
// The settings, with Triton's names: log_info, log_warning and log_error
// (bool) turn the messages of each level on or off, log_verbose_level (a
// number; above 0 turns on slog's debug messages), log_format ("default" or
// "ISO8601": text lines, whose times are ISO 8601 already; "json": JSON
// lines, kiln's own) and log_file (kiln logs to standard error only: ""
// is the one value taken).
package logging
