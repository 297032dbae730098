"""The CRM records `telephony.externalCall.searchCrmEntities` finds on a development portal.

Every portal starts with `default_crm()` (DevPortal.crm); a test may replace the list. Each
record is what the method's page returns of it (api-reference/telephony/
telephony-external-call-search-crm-entities.md): CRM_ENTITY_TYPE, CRM_ENTITY_ID, NAME and the
responsible employee ASSIGNED_BY_ID (a user of state.default_users), plus the phone numbers a
search matches, written as people type them in the CRM.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class CrmEntity:
    """One contact, company or lead with its phone numbers and responsible employee."""

    entity_type: str  # CONTACT, COMPANY or LEAD
    id: int
    name: str  # a contact's full name, a company's or lead's title
    phones: tuple[str, ...]
    assigned_by_id: int


def default_crm() -> list[CrmEntity]:
    """The company's clients, for routing an incoming call to the responsible employee.

    +1 906 219-50-47 (the page's example number) is both a contact, Boris's (extension 101),
    and a company, Clara's (102); +44 20 7946 0018 is a lead of Dmitri, who has no extension;
    Olga Schmidt, Clara's contact, has two numbers.
    """
    return [
        CrmEntity("CONTACT", 651, "John Doe", ("+1 906 219-50-47",), 2),
        CrmEntity("COMPANY", 643, "Daisy LLC", ("19062195047",), 3),
        CrmEntity("LEAD", 1001, "Website enquiry", ("+44 20 7946 0018",), 4),
        CrmEntity("CONTACT", 652, "Olga Schmidt", ("+49 30 901820", "+49 151 2345 6789"), 3),
    ]
