package migrations

// MigrateTo brings the database to a version below the latest: the tests
// fill a database as an earlier version left it, then migrate it.
var MigrateTo = migrateTo
