package postgres

import (
	"errors"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/redpacket/rain"
)

// DataError turns an error of SQLSTATE class 22 (data exception: a NUL in
// text, a value out of range) or 23 (integrity constraint violation: a
// CHECK) into a rain.EINVALID error: the input, not the database, is at
// fault, and the transaction wrote nothing. The driver's text stays the
// cause, for the logs; the message says nothing of it. Any other error is
// returned as it is.
func DataError(err error) error {
	var pg *pgconn.PgError
	if errors.As(err, &pg) && (strings.HasPrefix(pg.Code, "22") || strings.HasPrefix(pg.Code, "23")) {
		return &rain.Error{Code: rain.EINVALID, Message: "the database refused a value of the request; nothing was written", Cause: err}
	}
	return err
}
