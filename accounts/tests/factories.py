import factory
from django.utils import timezone

from accounts import services
from accounts.models import Membership, Team, User

DEFAULT_PASSWORD = "correct-horse-battery-staple"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"user{n}@example.com")
    full_name = factory.Faker("name")
    date_joined = factory.LazyFunction(timezone.now)
    password = factory.PostGenerationMethodCall("set_password", DEFAULT_PASSWORD)

    @classmethod
    def _after_postgeneration(cls, instance, create, results=None):
        if create:
            instance.save()


class TeamFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Team

    name = factory.Sequence(lambda n: f"Team {n}")
    billing_email = factory.Sequence(lambda n: f"billing{n}@example.com")


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    team = factory.SubFactory(TeamFactory)
    role = Membership.Role.MEMBER


def make_team_with_owner(**team_kwargs) -> tuple[Team, User]:
    """A team created the way signup creates one (so other apps' signup hooks run)."""
    owner = UserFactory()
    team = services.team_create(
        name=team_kwargs.get("name", f"Team of {owner.email}"),
        billing_email=team_kwargs.get("billing_email", owner.email),
        owner=owner,
    )
    return team, owner
