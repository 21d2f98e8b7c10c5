"""tankwatch ground floor: records, site model, bus and transports, clock, codec, stores, auth; imports no stage."""
