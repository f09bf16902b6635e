//! sfop's cluster store on PostgreSQL (docs/adr/0029).
