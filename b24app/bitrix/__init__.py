"""Everything that speaks to Bitrix24: wire encoding, OAuth, the REST client, batch, errors."""
