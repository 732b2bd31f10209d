"""Create the demo data: an admin, an instructor, three students, a simulated host, a template and a pool.

Safe to run again: existing rows are left as they are.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand

from labs.access import INSTRUCTORS_GROUP
from labs.models import Host, IpPool, LabTemplate

DEMO_PASSWORD = "xenpanel-demo"


class Command(BaseCommand):
    help = "Seed demo users, a simulated host, a template and an IP pool."

    def handle(self, *args, **options) -> None:
        User = get_user_model()
        instructors, _ = Group.objects.get_or_create(name=INSTRUCTORS_GROUP)

        def user(username: str, **extra) -> None:
            if not User.objects.filter(username=username).exists():
                u = User.objects.create_user(username, f"{username}@example.edu", DEMO_PASSWORD, **extra)
                if username == "instructor":
                    u.groups.add(instructors)

        user("admin", is_staff=True, is_superuser=True)
        user("instructor", first_name="Ada", last_name="Instructor")
        for i, name in enumerate(("Alice", "Bruno", "Carla"), 1):
            user(f"student{i}", first_name=name, last_name="Student")

        Host.objects.get_or_create(
            name="sim-dom0",
            defaults={"queue_name": "dom0-sim", "volume_group": "vg0", "bridge": "xenbr0", "dom0_reserve_mb": 1024},
        )
        LabTemplate.objects.get_or_create(
            name="debian-12",
            defaults={
                "rootfs_path": "/modelo",
                "kernel": "/boot/vmlinuz-6.1.0-xen-domu",
                "ramdisk": "/boot/initrd.img-6.1.0-xen-domu",
                "root_size_mb": 4096,
                "swap_size_mb": 512,
                "default_memory_mb": 256,
                "max_memory_mb": 1024,
            },
        )
        IpPool.objects.get_or_create(
            name="lab-net",
            defaults={
                "network": "10.10.0.0/24",
                "gateway": "10.10.0.1",
                "first_ip": "10.10.0.10",
                "last_ip": "10.10.0.250",
                "dns_domain": "lab.example.edu",
                "reserved": "10.10.0.53",
            },
        )
        self.stdout.write(
            f"Demo logins (password for all: {DEMO_PASSWORD}):\n  admin       staff, Django admin at /admin/\n"
            "  instructor  creates lab batches\n  student1, student2, student3"
        )
