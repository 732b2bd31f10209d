"""xenpanel's data model: hosts, templates, pools, labs, guests, tasks, audit, SSH keys, API tokens."""

from __future__ import annotations

import ipaddress

import netaddr
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from labs.save_point_models import SavePoint, default_max_save_points  # noqa: F401  (in its own module for size)
from labs.usage_models import (  # noqa: F401  (in its own module for size)
    HostUsageSample,
    UsageCursor,
    UsageRing,
    UsageSample,
    UsageTotal,
)
from labs.validators import Dom0Name, validate_jump_host


# Defaults read from settings when a row is created (callables, so changing
# the environment never asks for a new migration).
def default_lab_max_guest_memory_mb() -> int:
    return settings.XENPANEL_DEFAULT_LAB_MAX_GUEST_MEMORY_MB


def default_max_guests() -> int:
    return settings.XENPANEL_DEFAULT_MAX_GUESTS


def default_max_memory_mb() -> int:
    return settings.XENPANEL_DEFAULT_MAX_MEMORY_MB


class Host(models.Model):
    """A dom0. Its RQ worker listens on `queue_name`."""

    class Toolstack(models.TextChoices):
        XL = "xl", "xl"
        XM = "xm", _("xm (Xen < 4.5)")

    name = models.CharField(_("name"), max_length=48, unique=True, validators=[Dom0Name("domain_name")])
    queue_name = models.CharField(_("RQ queue"), max_length=64, unique=True, validators=[Dom0Name("domain_name")])
    toolstack = models.CharField(_("toolstack"), max_length=2, choices=Toolstack.choices, default=Toolstack.XL)
    volume_group = models.CharField(_("volume group"), max_length=64, validators=[Dom0Name("volume_group")])
    thin_pool = models.CharField(
        _("thin pool"), max_length=64, blank=True, validators=[Dom0Name("volume_name", optional=True)]
    )
    bridge = models.CharField(_("bridge"), max_length=15, default="xenbr0", validators=[Dom0Name("domain_name")])
    lv_prefix = models.CharField(
        _("LV name prefix"),
        max_length=16,
        default="vm-",
        # Plain text: the admin shows help texts as HTML, which ate "<prefix><domain>".
        help_text=_(
            "Guest volumes are named with this prefix, then the VM's name: for example vm-net101-alice.raiz"
            " and vm-net101-alice.swap."
        ),
    )
    dom0_reserve_mb = models.PositiveIntegerField(
        _("dom0 memory reserve (MiB)"), default=1024, validators=[MinValueValidator(196)]
    )
    enabled = models.BooleanField(_("accepts new guests"), default=True)
    jobs_at_a_time = models.PositiveSmallIntegerField(  # read by the host's worker pool (labs.jobs.pool)
        _("jobs at a time"),
        default=2,
        validators=[MinValueValidator(1), MaxValueValidator(8)],
        help_text=_("Jobs this host's worker runs at once (guests built side by side); changes apply in seconds."),
    )
    console_ssh = models.CharField(
        _("console ssh target"),
        max_length=200,
        blank=True,
        help_text=_("For example student@dom0.example.edu; empty means students run xl console on dom0."),
    )
    # Reported by the host's worker (state sync and health checks).
    total_memory_mb = models.PositiveIntegerField(_("total memory (MiB)"), null=True, blank=True)
    free_memory_mb = models.PositiveIntegerField(_("free memory (MiB)"), null=True, blank=True)
    vg_size_mb = models.PositiveIntegerField(_("VG size (MiB)"), null=True, blank=True)
    vg_free_mb = models.PositiveIntegerField(_("VG free (MiB)"), null=True, blank=True)
    xen_version = models.CharField(_("Xen version"), max_length=64, blank=True)
    last_seen = models.DateTimeField(_("last seen"), null=True, blank=True)
    health_ok = models.BooleanField(_("healthy"), null=True, blank=True)
    health_report = models.JSONField(_("health report"), default=dict, blank=True)
    health_checked_at = models.DateTimeField(_("health checked"), null=True, blank=True)

    class Meta:
        verbose_name = _("host")
        verbose_name_plural = _("hosts")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if not self.lv_prefix or not all(c.isalnum() or c in "-_." for c in self.lv_prefix):
            raise ValidationError({"lv_prefix": _("Use letters, digits, '-', '_' or '.'.")})

    @property
    def usable_memory_mb(self) -> int | None:
        """Memory guests may use: total minus the dom0 reserve."""
        if self.total_memory_mb is None:
            return None
        return max(self.total_memory_mb - self.dom0_reserve_mb, 0)


class LabTemplate(models.Model):
    """A debootstrap tree on each dom0 that guests are cloned from."""

    class RootDevice(models.TextChoices):
        XVDA = "xvda", "xvda"
        HDA = "hda", _("hda (old hosts)")

    class FsType(models.TextChoices):
        EXT4 = "ext4", "ext4"
        EXT3 = "ext3", "ext3"

    class CloneMethod(models.TextChoices):
        MKFS = "mkfs", _("mkfs -d (fast, default)")
        COPY = "copy", _("mount + cp -a (seed recipe)")
        THIN = "thin", _("thin snapshot of a golden LV")

    name = models.CharField(_("name"), max_length=64, unique=True)
    rootfs_path = models.CharField(
        _("root filesystem path on dom0"), max_length=200, default="/modelo", validators=[Dom0Name("abs_path")]
    )
    golden_volume = models.CharField(
        _("golden LV (thin snapshots)"), max_length=64, blank=True, validators=[Dom0Name("volume_name", optional=True)]
    )
    kernel = models.CharField(_("kernel"), max_length=200, validators=[Dom0Name("abs_path")])
    ramdisk = models.CharField(
        _("ramdisk"), max_length=200, blank=True, validators=[Dom0Name("abs_path", optional=True)]
    )
    root_device = models.CharField(
        _("root device naming"), max_length=4, choices=RootDevice.choices, default=RootDevice.XVDA
    )
    fs_type = models.CharField(_("filesystem"), max_length=4, choices=FsType.choices, default=FsType.EXT4)
    clone_method = models.CharField(
        _("clone method"), max_length=4, choices=CloneMethod.choices, default=CloneMethod.MKFS
    )
    root_size_mb = models.PositiveIntegerField(_("root size (MiB)"), default=4096, validators=[MinValueValidator(8)])
    swap_size_mb = models.PositiveIntegerField(_("swap size (MiB)"), default=512, validators=[MinValueValidator(0)])
    default_memory_mb = models.PositiveIntegerField(
        _("default memory (MiB)"), default=256, validators=[MinValueValidator(16)]
    )
    max_memory_mb = models.PositiveIntegerField(
        _("maximum memory (MiB)"), default=1024, validators=[MinValueValidator(16)]
    )
    vcpus = models.PositiveSmallIntegerField(_("vCPUs"), default=1, validators=[MinValueValidator(1)])
    created_at = models.DateTimeField(_("created"), default=timezone.now)

    class Meta:
        verbose_name = _("lab template")
        verbose_name_plural = _("lab templates")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if self.default_memory_mb and self.max_memory_mb and self.default_memory_mb > self.max_memory_mb:
            raise ValidationError({"default_memory_mb": _("The default memory exceeds the maximum.")})
        if self.clone_method == self.CloneMethod.THIN and not self.golden_volume:
            raise ValidationError({"golden_volume": _("Thin snapshots need a golden LV.")})


class IpPool(models.Model):
    """A static IPv4 range that guests get addresses from (NetBox-style set arithmetic)."""

    name = models.CharField(_("name"), max_length=64, unique=True)
    network = models.CharField(_("network (CIDR)"), max_length=18, help_text="10.10.0.0/24")
    gateway = models.GenericIPAddressField(_("gateway"), protocol="IPv4")
    first_ip = models.GenericIPAddressField(_("first usable address"), protocol="IPv4")
    last_ip = models.GenericIPAddressField(_("last usable address"), protocol="IPv4")
    reserved = models.TextField(
        _("reserved addresses"),
        blank=True,
        help_text=_("Addresses or ranges (a-b) that are never handed out, one per line or comma-separated."),
    )
    dns_domain = models.CharField(
        _("DNS domain"), max_length=253, default="lab.example.edu", validators=[Dom0Name("dns_domain")]
    )
    nameservers = models.CharField(_("name servers"), max_length=200, blank=True)
    mac_prefix = models.CharField(
        _("MAC prefix"), max_length=14, default="00:16:3e", validators=[Dom0Name("mac_prefix")]
    )
    # How students reach their guests by SSH: the guest page shows the line.
    reachable_from_campus = models.BooleanField(
        _("reachable from campus"),
        default=False,
        help_text=_("Guests' addresses can be reached directly from the campus network (ssh root@<ip>)."),
    )
    jump_host = models.CharField(
        _("SSH jump host"),
        max_length=200,
        blank=True,
        validators=[validate_jump_host],
        help_text=_("host, user@host or host:port; students then use ssh -J <jump host> root@<ip>."),
    )

    class Meta:
        verbose_name_plural = _("IP pools")
        ordering = ["name"]
        verbose_name = _("IP pool")

    def __str__(self) -> str:
        return f"{self.name} ({self.network})"

    @property
    def ip_network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.network, strict=True)

    def reserved_set(self) -> netaddr.IPSet:
        result = netaddr.IPSet()
        for item in self.reserved.replace(",", "\n").split():
            if "-" in item:
                start, end = item.split("-", 1)
                result.add(netaddr.IPRange(start.strip(), end.strip()))
            else:
                result.add(netaddr.IPAddress(item.strip()))
        return result

    def usable_set(self) -> netaddr.IPSet:
        """All addresses the pool may hand out: range minus network, broadcast, gateway and reserved."""
        net = netaddr.IPNetwork(self.network)
        usable = netaddr.IPSet(netaddr.IPRange(self.first_ip, self.last_ip)) & netaddr.IPSet([net])
        if net.prefixlen < 31:
            usable -= netaddr.IPSet([net.network, net.broadcast])
        usable -= netaddr.IPSet([self.gateway])
        return usable - self.reserved_set()

    def clean(self) -> None:
        try:
            net = ipaddress.IPv4Network(self.network, strict=True)
        except ValueError as e:
            raise ValidationError({"network": str(e)}) from None
        for field in ("gateway", "first_ip", "last_ip"):
            value = getattr(self, field)
            if not value:
                continue
            try:
                address = ipaddress.IPv4Address(value)
            except ValueError:
                # full_clean() runs clean() even after a field failed to validate.
                raise ValidationError({field: _("%(ip)s is not an IPv4 address.") % {"ip": value}}) from None
            if address not in net:
                raise ValidationError({field: _("%(ip)s is outside %(net)s.") % {"ip": value, "net": net}})
        if self.first_ip and self.last_ip:
            if ipaddress.IPv4Address(self.first_ip) > ipaddress.IPv4Address(self.last_ip):
                raise ValidationError({"last_ip": _("The last address comes before the first.")})
        try:
            self.reserved_set()
        except (netaddr.AddrFormatError, ValueError) as e:
            raise ValidationError({"reserved": str(e)}) from None


class Lab(models.Model):
    """A lab batch: one template, one pool, one guest per student."""

    class Status(models.TextChoices):
        ACTIVE = "active", _("active")
        TEARING_DOWN = "tearing_down", _("tearing down")
        TORN_DOWN = "torn_down", _("torn down")

    name = models.CharField(_("name"), max_length=100)
    slug = models.CharField(_("short name"), max_length=20, validators=[Dom0Name("domain_name")])
    instructors = models.ManyToManyField(
        settings.AUTH_USER_MODEL, related_name="labs_taught", verbose_name=_("instructors")
    )
    template = models.ForeignKey(LabTemplate, on_delete=models.PROTECT, verbose_name=_("template"))
    pool = models.ForeignKey(IpPool, on_delete=models.PROTECT, verbose_name=_("IP pool"))
    memory_mb = models.PositiveIntegerField(_("memory per guest (MiB)"), validators=[MinValueValidator(16)])
    max_guest_memory_mb = models.PositiveIntegerField(
        _("maximum memory per guest (MiB)"),
        default=default_lab_max_guest_memory_mb,
        validators=[MinValueValidator(16)],
    )
    expires_at = models.DateTimeField(_("expires"), null=True, blank=True)
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.ACTIVE)
    created_at = models.DateTimeField(_("created"), default=timezone.now)

    class Meta:
        verbose_name = _("lab")
        verbose_name_plural = _("labs")
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["slug"], condition=~models.Q(status="torn_down"), name="lab_slug_unique_while_live"
            )
        ]

    def __str__(self) -> str:
        return self.name


class Xl:
    """`xl list` state letters, as Guest.observed_state keeps them ("" when the domain does not exist)."""

    RUNNING = "r"
    BLOCKED = "b"  # running, waiting for work: students see it as running
    PAUSED = "p"
    SHUTDOWN = "s"
    CRASHED = "c"
    DYING = "d"
    ABSENT = ""
    # A domain that runs, and one that exists and is up (running or paused).
    RUNS = (RUNNING, BLOCKED)
    UP = (RUNNING, BLOCKED, PAUSED)
    # A dead domain left behind: it blocks `xl create` until destroyed.
    LEFTOVER = (SHUTDOWN, CRASHED, DYING)
    # On its way down: the next sync settles it.
    GOING = (SHUTDOWN, DYING)


class Guest(models.Model):
    """One student's VM: an allocation of IP, MAC, volumes and memory on a host."""

    class Status(models.TextChoices):
        PENDING = "pending", _("queued")
        PROVISIONING = "provisioning", _("provisioning")
        READY = "ready", _("ready")
        FAILED = "failed", _("failed")
        TEARING_DOWN = "tearing_down", _("tearing down")

    class Desired(models.TextChoices):
        RUNNING = "running", _("running")
        STOPPED = "stopped", _("stopped")
        PAUSED = "paused", _("paused")
        SAVED = "saved", _("saved")  # `xl save`d outside class hours (labs.services.class_hours)

    lab = models.ForeignKey(Lab, on_delete=models.CASCADE, related_name="guests", verbose_name=_("lab"))
    student = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="guests", verbose_name=_("student")
    )
    host = models.ForeignKey(Host, on_delete=models.PROTECT, related_name="guests", verbose_name=_("host"))
    # Denormalised from lab.pool so the database can enforce "one IP per pool".
    pool = models.ForeignKey(IpPool, on_delete=models.PROTECT, related_name="guests", verbose_name=_("IP pool"))
    domain_name = models.CharField(_("domain name"), max_length=48, validators=[Dom0Name("domain_name")])
    hostname = models.CharField(_("hostname"), max_length=63)
    ip = models.GenericIPAddressField(_("IP address"), protocol="IPv4")
    mac = models.CharField(_("MAC address"), max_length=17)
    root_lv = models.CharField(_("root LV"), max_length=127)
    swap_lv = models.CharField(_("swap LV"), max_length=127, blank=True)
    memory_mb = models.PositiveIntegerField(_("memory (MiB)"), validators=[MinValueValidator(16)])
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.PENDING)
    desired_state = models.CharField(
        _("desired state"), max_length=8, choices=Desired.choices, default=Desired.RUNNING
    )
    # The xl list state letter last seen for this domain: r b p s c d, or ""
    # when the domain does not exist on the host.
    observed_state = models.CharField(_("observed state"), max_length=1, blank=True)
    observed_at = models.DateTimeField(_("observed"), null=True, blank=True)
    # The action a queued or running job is performing ("" when idle).
    busy_with = models.CharField(_("busy with"), max_length=16, blank=True)
    last_error = models.TextField(_("last error"), blank=True)
    initial_password = models.CharField(_("initial root password"), max_length=64, blank=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("guest")
        verbose_name_plural = _("guests")
        ordering = ["lab", "domain_name"]
        constraints = [
            models.UniqueConstraint(fields=["pool", "ip"], name="guest_ip_unique_in_pool"),
            models.UniqueConstraint(fields=["mac"], name="guest_mac_unique"),
            models.UniqueConstraint(fields=["host", "domain_name"], name="guest_domain_unique_on_host"),
        ]

    def __str__(self) -> str:
        return self.domain_name


class StudentQuota(models.Model):
    """Per-student limits; students without a row get the settings' defaults."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="quota")
    max_guests = models.PositiveIntegerField(_("maximum guests"), default=default_max_guests)
    max_memory_mb = models.PositiveIntegerField(_("maximum total memory (MiB)"), default=default_max_memory_mb)
    max_save_points = models.PositiveIntegerField(_("maximum save points"), default=default_max_save_points)

    class Meta:
        verbose_name_plural = _("student quotas")
        verbose_name = _("student quota")

    def __str__(self) -> str:
        return f"{self.user}: {self.max_guests} guests, {self.max_memory_mb} MiB"


class Task(models.Model):
    """A background job on a host, recorded step by step (NetBox's Job row)."""

    class Status(models.TextChoices):
        QUEUED = "queued", _("queued")
        RUNNING = "running", _("running")
        SUCCEEDED = "succeeded", _("succeeded")
        FAILED = "failed", _("failed")

    kind = models.CharField(_("kind"), max_length=16)
    guest = models.ForeignKey(Guest, on_delete=models.SET_NULL, null=True, blank=True, related_name="tasks")
    lab = models.ForeignKey(Lab, on_delete=models.SET_NULL, null=True, blank=True, related_name="tasks")
    host = models.ForeignKey(Host, on_delete=models.SET_NULL, null=True, blank=True, related_name="tasks")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    target = models.CharField(_("target"), max_length=100, blank=True)
    args = models.JSONField(default=dict, blank=True)
    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.QUEUED)
    step = models.CharField(_("step"), max_length=32, blank=True)
    steps_done = models.PositiveSmallIntegerField(default=0)
    steps_total = models.PositiveSmallIntegerField(default=0)
    log = models.TextField(_("log"), blank=True)
    error = models.TextField(_("error"), blank=True)
    rq_job_id = models.CharField(max_length=64, blank=True, db_index=True)
    # Seconds spent inside dom0 commands, so benchmarks can split panel overhead from host work.
    dom0_seconds = models.FloatField(default=0)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("task")
        verbose_name_plural = _("tasks")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.kind} {self.target} ({self.status})"


class AuditEvent(models.Model):
    """Who did what to which guest or lab, when, and the result."""

    class Result(models.TextChoices):
        REQUESTED = "requested", _("requested")
        SUCCEEDED = "succeeded", _("succeeded")
        FAILED = "failed", _("failed")
        REFUSED = "refused", _("refused")

    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    action = models.CharField(_("action"), max_length=32)
    guest = models.ForeignKey(Guest, on_delete=models.SET_NULL, null=True, blank=True)
    lab = models.ForeignKey(Lab, on_delete=models.SET_NULL, null=True, blank=True)
    target = models.CharField(_("target"), max_length=100, blank=True)
    result = models.CharField(_("result"), max_length=10, choices=Result.choices)
    message = models.TextField(_("message"), blank=True)
    task = models.ForeignKey(Task, on_delete=models.SET_NULL, null=True, blank=True)
    created_at = models.DateTimeField(_("when"), default=timezone.now, db_index=True)

    class Meta:
        verbose_name = _("audit event")
        verbose_name_plural = _("audit events")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.actor} {self.action} {self.target}: {self.result}"

    @classmethod
    def requested(cls, task: Task, message: str = "") -> AuditEvent:
        """The (unsaved) record that someone asked for `task`: its job reports the result on it later."""
        return cls(
            actor_id=task.actor_id,
            action=task.kind,
            guest_id=task.guest_id,
            lab_id=task.lab_id,
            target=task.target,
            result=cls.Result.REQUESTED,
            task=task,
            message=message,
        )


class SshKey(models.Model):
    """One of a user's SSH public keys, as `labs.services.ssh_keys` parsed it (never the text as pasted)."""

    class KeyType(models.TextChoices):
        ED25519 = "ssh-ed25519", "ed25519"
        ECDSA_P256 = "ecdsa-sha2-nistp256", "ECDSA P-256"
        ECDSA_P384 = "ecdsa-sha2-nistp384", "ECDSA P-384"
        ECDSA_P521 = "ecdsa-sha2-nistp521", "ECDSA P-521"
        RSA = "ssh-rsa", "RSA"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="ssh_keys", verbose_name=_("user")
    )
    key_type = models.CharField(_("type"), max_length=32, choices=KeyType.choices)
    body = models.TextField(_("key (base64)"))
    bits = models.PositiveIntegerField(_("bits"))
    comment = models.CharField(_("comment"), max_length=100)
    fingerprint = models.CharField(_("fingerprint"), max_length=64)
    created_at = models.DateTimeField(_("added"), default=timezone.now)

    class Meta:
        ordering = ["user", "created_at"]
        verbose_name = _("SSH key")
        verbose_name_plural = _("SSH keys")
        constraints = [models.UniqueConstraint(fields=["user", "fingerprint"], name="ssh_key_unique_per_user")]

    def __str__(self) -> str:
        return f"{self.user}: {self.key_type} {self.fingerprint} {self.comment}"

    @property
    def authorized_keys_line(self) -> str:
        return f"{self.key_type} {self.body} {self.comment}"


class ApiToken(models.Model):
    """A user's personal token for the JSON API (scripts): only its SHA-256 is stored; the token is shown once."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens", verbose_name=_("user")
    )
    name = models.CharField(_("name"), max_length=64)
    # The token's first characters, to tell tokens apart in the list; not enough to guess the rest.
    prefix = models.CharField(_("starts with"), max_length=16)
    digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    expires_at = models.DateTimeField(_("expires"))
    last_used_at = models.DateTimeField(_("last used"), null=True, blank=True)
    revoked_at = models.DateTimeField(_("revoked"), null=True, blank=True)

    class Meta:
        ordering = ["user", "-created_at"]
        verbose_name = _("API token")
        verbose_name_plural = _("API tokens")

    def __str__(self) -> str:
        return f"{self.user}: {self.name} ({self.prefix}…)"

    @property
    def is_live(self) -> bool:
        """Neither revoked nor expired."""
        return self.revoked_at is None and self.expires_at > timezone.now()
