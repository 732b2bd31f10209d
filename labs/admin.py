"""The Django admin: the staff's view of every table, and where quotas and per-lab limits are edited.

Rows whose life is driven by dom0 work (guests, tasks, audit events) are
read-only here: creating or deleting them by hand would leave a VM and its
row out of step, so that goes through the panel's service layer.
"""

from __future__ import annotations

from typing import Any

import netaddr
from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ActionForm
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from labs.class_hours_models import ClassSchedule
from labs.dom0.errors import InvalidName
from labs.models import (
    ApiToken,
    AuditEvent,
    Guest,
    Host,
    HostUsageSample,
    IpPool,
    Lab,
    LabTemplate,
    SavePoint,
    SshKey,
    StudentQuota,
    Task,
    UsageCursor,
    UsageSample,
    UsageTotal,
)
from labs.services import api_tokens
from labs.services.errors import ServiceError
from labs.services.limits import (
    lab_limit_refusal,
    quota_guests_refusal,
    quota_limit_refusal,
    template_limit_refusal,
)
from labs.services.templates import enqueue_template_build, rebuild_spec

User = get_user_model()


@admin.register(Host)
class HostAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "queue_name",
        "toolstack",
        "volume_group",
        "bridge",
        "dom0_reserve_mb",
        "jobs_at_a_time",
        "total_memory_mb",
        "free_memory_mb",
        "xen_version",
        "health_ok",
        "last_seen",
        "enabled",
    )
    list_filter = ("toolstack", "enabled", "health_ok")
    search_fields = ("name", "queue_name", "volume_group")
    readonly_fields = (
        "total_memory_mb",
        "free_memory_mb",
        "vg_size_mb",
        "vg_free_mb",
        "xen_version",
        "last_seen",
        "health_ok",
        "health_report",
        "health_checked_at",
    )


class TemplateActionForm(ActionForm):
    """The admin's action bar plus the host a template build runs on."""

    host = forms.ModelChoiceField(Host.objects.all(), required=False, label=gettext_lazy("host"))


class LabTemplateAdminForm(forms.ModelForm):
    """The template's row: its maximum memory is refused under what its labs' VMs hold (labs.services.limits)."""

    class Meta:
        model = LabTemplate
        # The admin narrows it to the fields it shows; a list here would be all it showed.
        fields = "__all__"  # noqa: DJ007

    def clean_max_memory_mb(self) -> int:
        value = self.cleaned_data["max_memory_mb"]
        # Only a new value is checked: a row already over (written before this check) still saves its other fields.
        if value is None or "max_memory_mb" not in self.changed_data:
            return value
        refusal = template_limit_refusal(self.instance, value)
        if refusal:
            raise forms.ValidationError(refusal)
        return value


@admin.register(LabTemplate)
class LabTemplateAdmin(admin.ModelAdmin):
    form = LabTemplateAdminForm
    list_display = (
        "name",
        "rootfs_path",
        "kernel",
        "root_device",
        "fs_type",
        "clone_method",
        "root_size_mb",
        "swap_size_mb",
        "default_memory_mb",
        "max_memory_mb",
        "vcpus",
    )
    list_filter = ("root_device", "fs_type", "clone_method")
    search_fields = ("name", "rootfs_path")
    action_form = TemplateActionForm
    actions = ["build_on_host"]

    @admin.action(description=gettext_lazy("(Re)build on the chosen host with debootstrap"))
    def build_on_host(self, request: HttpRequest, queryset: QuerySet[LabTemplate]) -> None:
        host_pk = request.POST.get("host")
        host = Host.objects.filter(pk=host_pk).first() if host_pk else None
        if host is None:
            self.message_user(request, _("Choose the host that builds the template."), messages.ERROR)
            return
        for template in queryset:
            try:
                spec = rebuild_spec(template)
                task = enqueue_template_build(host, template.name, spec, actor=request.user)
            except (InvalidName, ServiceError) as e:
                self.message_user(request, f"{template.name}: {getattr(e, 'message', e)}", messages.ERROR)
                continue
            self.message_user(
                request,
                _("%(template)s: build queued on %(host)s (task %(task)s).")
                % {"template": template.name, "host": host.name, "task": task.pk},
            )


@admin.register(IpPool)
class IpPoolAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "network",
        "gateway",
        "first_ip",
        "last_ip",
        "usable",
        "in_use",
        "dns_domain",
        "mac_prefix",
        "reachable_from_campus",
        "jump_host",
    )
    list_filter = ("dns_domain", "reachable_from_campus")
    search_fields = ("name", "network", "dns_domain")

    def get_queryset(self, request: HttpRequest) -> QuerySet[IpPool]:
        return super().get_queryset(request).annotate(guest_count=Count("guests"))

    @admin.display(description=gettext_lazy("usable addresses"))
    def usable(self, obj: IpPool) -> int | str:
        try:
            return obj.usable_set().size
        except (netaddr.AddrFormatError, ValueError):
            # A row written outside the admin (shell, data migration) skipped clean();
            # the list must still load so the admin can fix it.
            return "?"

    @admin.display(description=gettext_lazy("guests"), ordering="guest_count")
    def in_use(self, obj: IpPool) -> int:
        return obj.guest_count  # type: ignore[attr-defined]  # annotated by get_queryset


class LabAdminForm(forms.ModelForm):
    """The lab's row: its memory limit is refused under what its VMs hold (labs.services.limits)."""

    class Meta:
        model = Lab
        # The admin narrows it to the fields it shows; a list here would be all it showed.
        fields = "__all__"  # noqa: DJ007

    def clean_max_guest_memory_mb(self) -> int:
        value = self.cleaned_data["max_guest_memory_mb"]
        lab = self.instance
        if "memory_mb" in self.cleaned_data:  # the change form: the per-VM size as typed
            lab.memory_mb = self.cleaned_data["memory_mb"]
        refusal = lab_limit_refusal(lab, value) if value is not None else None
        if refusal:
            raise forms.ValidationError(refusal)
        return value


@admin.register(Lab)
class LabAdmin(admin.ModelAdmin):
    form = LabAdminForm
    list_display = (
        "name",
        "slug",
        "template",
        "pool",
        "memory_mb",
        "max_guest_memory_mb",
        "guest_total",
        "status",
        "expires_at",
        "created_at",
    )
    list_filter = ("status", "template", "pool")
    list_editable = ("max_guest_memory_mb",)
    list_select_related = ("template", "pool")
    search_fields = ("name", "slug", "instructors__username")
    filter_horizontal = ("instructors",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Lab]:
        return super().get_queryset(request).annotate(guest_count=Count("guests"))

    def get_changelist_form(self, request: HttpRequest, **kwargs):
        # The list edits the limit in place: the same check as the change form.
        return super().get_changelist_form(request, form=LabAdminForm, **kwargs)

    @admin.display(description=gettext_lazy("guests"), ordering="guest_count")
    def guest_total(self, obj: Lab) -> int:
        return obj.guest_count  # type: ignore[attr-defined]  # annotated by get_queryset

    def has_delete_permission(self, request: HttpRequest, obj: Lab | None = None) -> bool:
        # Deleting a lab row would cascade to its guests and orphan their VMs;
        # a lab with guests is torn down from the panel instead.
        if obj is not None and obj.guests.exists():
            return False
        return super().has_delete_permission(request, obj)

    def get_actions(self, request: HttpRequest) -> dict:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # the bulk delete skips has_delete_permission(obj)
        return actions


@admin.register(Guest)
class GuestAdmin(admin.ModelAdmin):
    """Read-mostly: allocations are made by the service layer, not by hand."""

    list_display = (
        "domain_name",
        "lab",
        "student",
        "host",
        "ip",
        "mac",
        "memory_mb",
        "status",
        "observed_state",
        "busy_with",
        "updated_at",
    )
    list_filter = ("status", "observed_state", "host", "lab")
    list_select_related = ("lab", "student", "host")
    search_fields = ("domain_name", "hostname", "ip", "mac", "student__username")
    readonly_fields = [f.name for f in Guest._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Guest | None = None) -> bool:
        # The row is the VM's only record; dropping it would leak the domain and its volumes.
        return False


class StudentQuotaAdminForm(forms.ModelForm):
    """A quota's row (its page, the list, the user page): its memory and its number of VMs are refused under what
    the student's VMs hold (labs.services.limits)."""

    class Meta:
        model = StudentQuota
        # The admin narrows it to the fields it shows; a list here would be all it showed.
        fields = "__all__"  # noqa: DJ007

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        # Only a new value is checked, as on the template's form.
        checks = [
            (field, refusal_for)
            for field, refusal_for in (("max_guests", quota_guests_refusal), ("max_memory_mb", quota_limit_refusal))
            if cleaned.get(field) is not None and field in self.changed_data
        ]
        if not checks:
            return cleaned
        # The add form chooses the user; the change form, the list and the user page's inline know it already.
        user = cleaned["user"] if "user" in cleaned else self.instance.user if self.instance.user_id else None
        for field, refusal_for in checks:
            refusal = refusal_for(user, cleaned[field])
            if refusal:
                self.add_error(field, refusal)
        return cleaned


@admin.register(StudentQuota)
class StudentQuotaAdmin(admin.ModelAdmin):
    form = StudentQuotaAdminForm
    list_display = ("user", "max_guests", "max_memory_mb", "max_save_points")
    list_editable = ("max_guests", "max_memory_mb", "max_save_points")
    list_select_related = ("user",)
    search_fields = ("user__username", "user__email")
    autocomplete_fields = ("user",)

    def get_changelist_form(self, request: HttpRequest, **kwargs):
        # The list edits the memory and the number of VMs in place: the same checks as the change form.
        return super().get_changelist_form(request, form=StudentQuotaAdminForm, **kwargs)


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin):
    list_display = ("created_at", "kind", "target", "host", "status", "step", "steps_done", "steps_total", "actor")
    list_filter = ("status", "kind", "host")
    list_select_related = ("host", "actor")
    date_hierarchy = "created_at"
    search_fields = ("target", "rq_job_id", "error")
    readonly_fields = [f.name for f in Task._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows staff may look at but not add, change or delete: they are written by the panel, which audits them."""

    def get_readonly_fields(self, request: HttpRequest, obj=None) -> list[str]:
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    """An audit trail that staff can edit is not one."""

    list_display = ("created_at", "actor", "action", "target", "result")
    list_filter = ("result", "action")
    list_select_related = ("actor",)
    search_fields = ("target", "actor__username", "message")
    date_hierarchy = "created_at"


@admin.register(SshKey)
class SshKeyAdmin(ReadOnlyAdmin):
    """Users add and delete their own keys on "My SSH keys", where it is audited."""

    list_display = ("user", "key_type", "bits", "comment", "fingerprint", "created_at")
    list_filter = ("key_type",)
    list_select_related = ("user",)
    search_fields = ("user__username", "comment", "fingerprint")


@admin.register(SavePoint)
class SavePointAdmin(ReadOnlyAdmin):
    """Students and instructors take, return to and delete save points from the guest and lab pages (jobs)."""

    list_display = ("guest", "label", "method", "size_mb", "status", "lab_wide", "created_at")
    list_filter = ("method", "status", "lab_wide")
    list_select_related = ("guest",)
    search_fields = ("guest__domain_name", "label", "volume")


@admin.register(ClassSchedule)
class ClassScheduleAdmin(ReadOnlyAdmin):
    """A lab's instructors set its class hours on the lab's page, where they are checked and audited."""

    list_display = ("lab", "days", "start", "end", "outside", "students_may_wake", "applied_at")
    list_filter = ("outside", "students_may_wake")
    list_select_related = ("lab",)
    search_fields = ("lab__name", "lab__slug")


@admin.register(ApiToken)
class ApiTokenAdmin(ReadOnlyAdmin):
    """Users make and revoke their own tokens on "My API tokens"; staff may revoke any (audited, as theirs)."""

    list_display = ("user", "name", "prefix", "created_at", "expires_at", "last_used_at", "revoked_at")
    list_select_related = ("user",)
    search_fields = ("user__username", "name", "prefix")
    exclude = ("digest",)
    actions = ["revoke"]

    def get_readonly_fields(self, request: HttpRequest, obj=None) -> list[str]:
        return [name for name in super().get_readonly_fields(request, obj) if name != "digest"]

    @admin.action(description=gettext_lazy("Revoke the selected tokens"))
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        for token in queryset.filter(revoked_at=None):
            api_tokens.revoke_token(request.user, token)


# Usage (labs.services.usage): written by each host's sync, read by the charts and the usage report.
@admin.register(UsageTotal)
class UsageTotalAdmin(ReadOnlyAdmin):
    """Each guest's running totals for its lab's usage report (kept after the guest is deleted)."""

    list_display = (
        "domain_name",
        "lab",
        "student",
        "host",
        "run_seconds",
        "cpu_seconds",
        "peak_memory_mb",
        "last_seen",
    )
    list_select_related = ("lab", "student", "host")
    search_fields = ("domain_name", "student__username", "lab__slug")


@admin.register(UsageSample)
class UsageSampleAdmin(ReadOnlyAdmin):
    """The guests' usage rings, to look behind a chart (tier 0: 1 min, 1: 10 min, 2: 1 h)."""

    list_display = ("guest", "tier", "bucket", "n", "cpu", "cpu_max", "mem_mb")
    list_filter = ("tier",)
    list_select_related = ("guest",)
    search_fields = ("guest__domain_name",)


@admin.register(HostUsageSample)
class HostUsageSampleAdmin(ReadOnlyAdmin):
    list_display = ("host", "tier", "bucket", "n", "cpu", "cpu_max", "mem_mb")
    list_filter = ("tier", "host")
    list_select_related = ("host",)


@admin.register(UsageCursor)
class UsageCursorAdmin(ReadOnlyAdmin):
    """Each host's sync counters between ticks."""

    list_display = ("host",)


class QuotaInline(admin.StackedInline):
    model = StudentQuota
    form = StudentQuotaAdminForm
    can_delete = True
    extra = 0
    max_num = 1


admin.site.unregister(User)


@admin.register(User)
class XenpanelUserAdmin(UserAdmin):
    """The stock user admin, with the student's quota editable on the same page."""

    inlines = [QuotaInline]
