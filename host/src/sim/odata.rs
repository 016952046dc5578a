//! OData query options: `$filter`, `$select`, `$top` and paging (being written).
