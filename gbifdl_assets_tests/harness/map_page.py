"""Steps on the annotation service's map page that several browser tests take (Selenium)."""

from __future__ import annotations

from typing import Any


def log_in(driver: Any, wait: Any, user: str, password: str) -> None:
    """Log in through the page's own form and wait until the page says so."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    driver.find_element(By.ID, "login-user").send_keys(user)
    driver.find_element(By.ID, "login-password").send_keys(password)
    driver.find_element(By.ID, "login-button").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "login-status"), f"Logged in as {user}"))


def search_taxon(driver: Any, wait: Any, name: str, key: int) -> Any:
    """Search ``name`` in the taxon box; the clickable result for ``key`` (not clicked)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    driver.find_element(By.ID, "taxon-query").send_keys(name)
    driver.find_element(By.ID, "taxon-search").click()
    return wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, f".taxon-result[data-key='{key}']")))
