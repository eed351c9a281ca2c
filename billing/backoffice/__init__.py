"""
The back office (issue 6): roles, audit, refund requests, support actions and reconciliation. Services here write
(`<entity>_<action>`, keyword-only), selectors read; the admin (billing/admin*.py) only calls them.
"""
