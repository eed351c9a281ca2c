from django.db import migrations, models


class Migration(migrations.Migration):
    """
    API keys get a scope. Keys that exist already become `full` (what they could do until now), so existing clients
    keep working; new keys default to `usage`, the narrowest scope that serves the common case.
    """

    dependencies = [
        ("accounts", "0002_user_email_case_insensitive"),
    ]

    operations = [
        migrations.AddField(
            model_name="apikey",
            name="scope",
            field=models.CharField(
                choices=[
                    ("usage", "Usage: metered calls and usage events only"),
                    ("read", "Read: read-only access to the team's billing"),
                    ("full", "Full: everything the team's admins can do in the API, except managing keys"),
                ],
                default="full",
                help_text="What the key may do; chosen at creation, never widened. Keys made before scopes existed are full.",
                max_length=10,
            ),
            preserve_default=False,
        ),
        migrations.AlterField(
            model_name="apikey",
            name="scope",
            field=models.CharField(
                choices=[
                    ("usage", "Usage: metered calls and usage events only"),
                    ("read", "Read: read-only access to the team's billing"),
                    ("full", "Full: everything the team's admins can do in the API, except managing keys"),
                ],
                default="usage",
                help_text="What the key may do; chosen at creation, never widened. Keys made before scopes existed are full.",
                max_length=10,
            ),
        ),
    ]
