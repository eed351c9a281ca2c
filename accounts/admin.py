from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.utils.translation import gettext_lazy as _

from . import services
from .models import APIKey, Invitation, Membership, Team, User


class EmailUserCreationForm(AdminUserCreationForm):
    class Meta:
        model = User
        fields = ("email",)


class EmailUserChangeForm(UserChangeForm):
    class Meta:
        model = User
        fields = "__all__"


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]
    fields = ["user", "role", "created"]
    readonly_fields = ["created"]


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    form = EmailUserChangeForm
    add_form = EmailUserCreationForm
    ordering = ["email"]
    list_display = ["email", "full_name", "is_staff", "is_active", "date_joined"]
    list_filter = ["is_staff", "is_superuser", "is_active", "groups", "language"]
    search_fields = ["email", "full_name"]
    show_full_result_count = False
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        (_("Profile"), {"fields": ("full_name", "language")}),
        (_("Permissions"), {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        (_("Dates"), {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "usable_password", "password1", "password2")}),)

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if change and "is_active" in form.changed_data and not obj.is_active:
            services.user_deactivate(user=obj, deactivated_by=request.user)  # their API keys stop at once


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "billing_email", "created"]
    search_fields = ["name", "billing_email", "memberships__user__email"]
    list_filter = ["created"]
    date_hierarchy = "created"
    inlines = [MembershipInline]
    show_full_result_count = False

    def save_formset(self, request, form, formset, change):
        # A member removed or demoted here loses their API keys for the team, as on the team's own pages.
        touched = [m for m in formset.forms if m.instance.user_id and (m.has_changed() or m in formset.deleted_forms)]
        super().save_formset(request, form, formset, change)
        for membership_form in touched:
            services.membership_keys_sync(team=form.instance, user_id=membership_form.instance.user_id,
                                          changed_by=request.user)


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "team", "role", "created"]
    list_filter = ["role"]
    search_fields = ["user__email", "team__name"]
    list_select_related = ["user", "team"]
    autocomplete_fields = ["user", "team"]
    show_full_result_count = False

    def save_model(self, request, obj, form, change):
        previous = Membership.objects.filter(pk=obj.pk).values("team_id", "user_id").first() if change else None
        super().save_model(request, obj, form, change)
        services.membership_keys_sync(team=obj.team, user_id=obj.user_id, changed_by=request.user)
        if previous and (previous["team_id"], previous["user_id"]) != (obj.team_id, obj.user_id):
            services.membership_keys_sync(team=Team.objects.get(pk=previous["team_id"]), user_id=previous["user_id"],
                                          changed_by=request.user)

    def delete_model(self, request, obj):
        team, user_id = obj.team, obj.user_id
        super().delete_model(request, obj)
        services.membership_keys_sync(team=team, user_id=user_id, changed_by=request.user)

    def delete_queryset(self, request, queryset):
        pairs = [(m.team, m.user_id) for m in queryset.select_related("team")]
        super().delete_queryset(request, queryset)
        for team, user_id in pairs:
            services.membership_keys_sync(team=team, user_id=user_id, changed_by=request.user)


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    list_display = ["email", "team", "role", "status", "created", "accepted_at"]
    list_filter = ["status", "role"]
    search_fields = ["email", "team__name"]
    list_select_related = ["team"]
    exclude = ["token_hash"]
    readonly_fields = ["team", "email", "role", "status", "invited_by", "created", "accepted_at"]
    show_full_result_count = False

    def has_add_permission(self, request):
        return False  # invitations are sent by team admins from the site, with a token only they receive


@admin.register(APIKey)
class APIKeyAdmin(admin.ModelAdmin):
    """Never shows the hash or a secret: the secret is not stored, and the hash is nobody's business."""

    list_display = ["name", "prefix", "team", "created_by", "created", "last_used_at", "expires_at", "revoked_at"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter), "created"]
    search_fields = ["name", "prefix", "team__name", "created_by__email"]
    list_select_related = ["team", "created_by"]
    # Everything is read-only: revocation goes through the action below (a service call, logged).
    fields = ["name", "prefix", "team", "created_by", "created", "last_used_at", "expires_at", "revoked_at"]
    readonly_fields = fields
    actions = ["revoke_selected"]
    show_full_result_count = False

    def has_add_permission(self, request):
        return False  # keys are created by the team (secret shown once to them), never by staff

    @admin.action(description=_("Revoke the selected keys"), permissions=["change"])
    def revoke_selected(self, request, queryset):
        count = 0
        for api_key in queryset.filter(revoked_at__isnull=True):
            services.api_key_revoke_by_staff(api_key=api_key, staff_user=request.user)
            count += 1
        self.message_user(request, _("%(count)d key(s) revoked.") % {"count": count}, messages.SUCCESS)
