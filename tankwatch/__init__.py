"""tankwatch spine: site model, records, bus, stores, supervisor and CLI."""
