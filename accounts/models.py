from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class UserManager(BaseUserManager):
    use_in_migrations = True

    def _create_user(self, email: str, password: str | None, **extra_fields):
        if not email:
            raise ValueError("An email address is required.")
        user = self.model(email=self.normalize_email(email).lower(), **extra_fields)
        user.set_password(password)
        user.full_clean(exclude=["password"])
        user.save(using=self._db)
        return user

    def create_user(self, email: str, password: str | None = None, **extra_fields):
        extra_fields.setdefault("is_staff", False)
        extra_fields.setdefault("is_superuser", False)
        return self._create_user(email, password, **extra_fields)

    def create_superuser(self, email: str, password: str | None = None, **extra_fields):
        extra_fields["is_staff"] = True
        extra_fields["is_superuser"] = True
        return self._create_user(email, password, **extra_fields)

    def get_by_natural_key(self, username: str):
        # Emails are stored lower case, so "Ana@Example.com" logs in as ana@example.com.
        return self.get(**{self.model.USERNAME_FIELD: (username or "").strip().lower()})


class User(AbstractBaseUser, PermissionsMixin):
    """A person. Email is the login; there is no username."""

    email = models.EmailField(_("email address"), unique=True, help_text="Login and contact address (lower case).")
    full_name = models.CharField(_("full name"), max_length=150, blank=True)
    language = models.CharField(
        _("language"),
        max_length=10,
        choices=settings.LANGUAGES,
        default="en",
        help_text="Language of the emails this person receives.",
    )
    is_staff = models.BooleanField(default=False, help_text="May log into the back office.")
    is_active = models.BooleanField(default=True)
    date_joined = models.DateTimeField(default=timezone.now)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    class Meta:
        ordering = ["email"]
        constraints = [
            # Case-insensitive uniqueness in the database too, whatever path a row takes (admin, shell, import).
            models.UniqueConstraint(Lower("email"), name="unique_user_email_case_insensitive"),
        ]

    def __str__(self) -> str:
        return self.email

    def clean(self) -> None:
        super().clean()
        self.email = (self.email or "").strip().lower()

    def get_full_name(self) -> str:
        return self.full_name or self.email

    def get_short_name(self) -> str:
        return self.full_name.split(" ")[0] if self.full_name else self.email


class Team(models.Model):
    """The paying subscriber: dj-stripe's DJSTRIPE_SUBSCRIBER_MODEL. One Stripe customer per team."""

    name = models.CharField(max_length=120)
    billing_email = models.EmailField(help_text="Where invoices and receipts go.")
    created = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return f"{self.name} (#{self.pk})"

    @property
    def email(self) -> str:
        # dj-stripe requires the subscriber to have an `email`.
        return self.billing_email


class Membership(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner", _("Owner")
        ADMIN = "admin", _("Admin")
        MEMBER = "member", _("Member")

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "team"], name="unique_membership_per_user_and_team")]
        ordering = ["team_id", "created"]

    def __str__(self) -> str:
        return f"{self.user} in {self.team} ({self.role})"

    @property
    def can_manage(self) -> bool:
        return self.role in (self.Role.OWNER, self.Role.ADMIN)


class Invitation(models.Model):
    """An invitation for an email address to join a team. The token in the link is stored only as a hash."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        ACCEPTED = "accepted", _("Accepted")
        REVOKED = "revoked", _("Revoked")

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField()
    role = models.CharField(max_length=10, choices=Membership.Role.choices, default=Membership.Role.MEMBER)
    token_hash = models.CharField(max_length=64, unique=True, help_text="SHA-256 of the token in the invite link.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    invited_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, related_name="+")
    created = models.DateTimeField(default=timezone.now)
    accepted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["team", "email"], condition=Q(status="pending"), name="one_pending_invitation_per_email"
            )
        ]

    def __str__(self) -> str:
        return f"{self.email} → {self.team}"

    @property
    def is_expired(self) -> bool:
        return (timezone.now() - self.created).total_seconds() > settings.INVITATION_MAX_AGE_SECONDS


class APIKey(models.Model):
    """
    A key for programs, bound to a team AND to the member who made it, limited to one scope. The secret is shown once
    at creation and never stored: we keep its public `prefix` for lookup and an HMAC-SHA256 of the whole key
    (server-side secret API_KEY_HMAC_SECRET) for verification.

    A key acts only while its creator is an active user who is still a member of the team with a role that may mint
    keys (owner or admin): accounts.authentication checks that on every request, and the services that remove a
    member, lower a role or deactivate a user also revoke the keys at once.
    """

    class Scope(models.TextChoices):
        # Ordered from narrowest to widest; accounts.api.permissions says which views each one reaches.
        USAGE = "usage", _("Usage: metered calls and usage events only")
        READ = "read", _("Read: read-only access to the team's billing")
        FULL = "full", _("Full: everything the team's admins can do in the API, except managing keys")

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    scope = models.CharField(
        max_length=10, choices=Scope.choices, default=Scope.USAGE,
        help_text="What the key may do; chosen at creation, never widened. Keys made before scopes existed are full.",
    )
    prefix = models.CharField(max_length=16, unique=True, help_text="Public part of the key, shown in lists.")
    hashed_key = models.CharField(max_length=64, help_text="HMAC-SHA256 of the full key. Never shown.")
    created_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, related_name="+")
    created = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True, help_text="Updated at most once a minute.")
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        now = timezone.now()
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)
