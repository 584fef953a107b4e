"""Every way the tables are judged: the supply proof, the range proof, the audit
(dry run) and status."""
