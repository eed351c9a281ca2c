from django.contrib.auth import views as auth_views
from django.urls import path, reverse_lazy

from . import converters  # noqa: F401  (registers the `rowid` path converter)
from . import views
from .forms import EmailAuthenticationForm

app_name = "accounts"


urlpatterns = [
    path("signup/", views.signup, name="signup"),
    path("login/", auth_views.LoginView.as_view(
            redirect_authenticated_user=True, authentication_form=EmailAuthenticationForm
        ), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path(
        "password-reset/",
        auth_views.PasswordResetView.as_view(
            success_url=reverse_lazy("accounts:password_reset_done"),
            email_template_name="registration/password_reset_email.txt",
        ),
        name="password_reset",
    ),
    path("password-reset/done/", auth_views.PasswordResetDoneView.as_view(), name="password_reset_done"),
    path(
        "reset/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(success_url=reverse_lazy("accounts:password_reset_complete")),
        name="password_reset_confirm",
    ),
    path("reset/done/", auth_views.PasswordResetCompleteView.as_view(), name="password_reset_complete"),
    path("team/members/", views.members, name="members"),
    path("team/members/<rowid:user_id>/remove/", views.member_remove, name="member_remove"),
    path("team/invitations/<rowid:invitation_id>/revoke/", views.invitation_revoke, name="invitation_revoke"),
    path("team/switch/<rowid:team_id>/", views.switch_team, name="switch_team"),
    path("team/api-keys/", views.api_keys, name="api_keys"),
    path("team/api-keys/<rowid:key_id>/revoke/", views.api_key_revoke, name="api_key_revoke"),
    path("otp/enrol/", views.otp_enrol, name="otp_enrol"),
    path("otp/verify/", views.otp_verify, name="otp_verify"),
    path("otp/recovery-codes/", views.otp_recovery_codes, name="otp_recovery_codes"),
    path("invitations/<str:token>/", views.invitation_accept, name="invitation_accept"),
]
