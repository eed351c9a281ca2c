# The billing app's own records live here; Stripe's objects are mirrored by dj-stripe's models.
