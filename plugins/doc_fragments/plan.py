# Copyright: warden.fleet contributors
# BSD 2-Clause License (see LICENSE)


class ModuleDocFragment:
    # The plan option every host-side module of the collection takes.
    DOCUMENTATION = r"""
options:
  plan:
    description:
      - The host's plan, as set by the C(warden.fleet.preflight) role in C(warden_plan).
      - Every name, path and address the module uses comes from it; see C(docs/inventory.md).
    type: dict
    required: true
"""
