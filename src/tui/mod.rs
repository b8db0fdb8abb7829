//! The interactive workbench: app state, pure update, panes, keymaps and themes.
