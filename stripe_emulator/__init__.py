"""Offline, stateful Stripe API emulator (standalone: no Django). See README.md and FRAMEWORK.md."""
