package pipeline

// Reasons a claim is not written, as the dead-letter header and the
// rain_consumer_dead_letters_total label show them.
const (
	ReasonMalformed          = "malformed"           // not a JSON object
	ReasonUnsupportedVersion = "unsupported_version" // "v" is not pipeline.EventVersion
	ReasonInvalid            = "invalid"             // a field missing or out of range
	ReasonUnknownCampaign    = "unknown_campaign"    // no such campaign in PostgreSQL
	ReasonUnknownAmount      = "unknown_amount"      // the amount is not in the campaign's inventory
	ReasonRejected           = "rejected"            // PostgreSQL refused the row (a constraint)
)
