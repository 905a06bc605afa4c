package postgres

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/redpacket/rain"
)

func TestDataError(t *testing.T) {
	for code, want := range map[string]string{
		"22021": rain.EINVALID, "22008": rain.EINVALID, "23514": rain.EINVALID, "23505": rain.EINVALID,
		"08006": rain.EINTERNAL, "57014": rain.EINTERNAL, "40001": rain.EINTERNAL,
	} {
		pg := &pgconn.PgError{Code: code, Message: "secret detail at 10.0.0.7"}
		err := DataError(fmt.Errorf("insert campaign: %w", pg))
		if got := rain.ErrorCode(err); got != want {
			t.Errorf("SQLSTATE %s: %s, want %s", code, got, want)
		}
		if !errors.Is(err, pg) {
			t.Errorf("SQLSTATE %s: the driver's error is not kept as the cause", code)
		}
		if strings.Contains(rain.ErrorMessage(err), "10.0.0.7") {
			t.Errorf("SQLSTATE %s: message %q carries the driver's text", code, rain.ErrorMessage(err))
		}
	}
	if DataError(nil) != nil {
		t.Error("nil is not an error")
	}
}
