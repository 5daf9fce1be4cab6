"""Posting-control fields of the sandbox's MainAccounts rows (dynamics-fo.md §2.3: DebitCreditRequirement,
PostingType, ValidatePostingType). Values follow the account's category the way a chart of accounts is
usually set up: control accounts carry the posting type of their subledger and validate it; revenue accounts
require credits. The sandbox reports these fields; it does not enforce them on journal lines."""

from __future__ import annotations

from typing import Any

from devkit.sandbox.dynamics import seed

_POSTING_TYPE = {
    "CASH": "Bank",
    "AR": "Cust",
    "AP": "Vend",
    "TAX": "Tax",
    "INV": "InventReceipt",
    "FA": "FixedAssetsDebit",
    "SALES": "SalesRevenue",
}


def main_account_posting(account: seed.MainAccountSeed) -> dict[str, Any]:
    posting = _POSTING_TYPE.get(account.category, "None")
    return {
        "DebitCreditRequirement": "Credit" if account.account_type == "Revenue" else "None",
        "PostingType": posting,
        "ValidatePostingType": "Yes" if posting != "None" else "No",
    }
